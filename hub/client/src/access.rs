//! Who the client is: connecting with an API key, and managing keys and
//! access rules (admin keys).

use std::fmt;

use cairn_proto::acl::{AclEntry, AclRule, ApiKeyInfo};
use cairn_proto::frame::{RequestBody, ResponseBody};

use crate::{Client, Result};

/// An API key id and its secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub key: String,
    pub secret: String,
}

impl fmt::Debug for Credentials {
    // Never the secret: errors and logs print this.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials").field("key", &self.key).field("secret", &"…").finish()
    }
}

/// How to connect, beyond the address.
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    /// Authenticate with this key right after connecting (hubs that
    /// require it refuse everything else until then).
    pub credentials: Option<Credentials>,
    /// Speak TLS to the hub's TLS listener.
    pub tls: Option<crate::TlsOptions>,
}

/// Who a connection acts as after authenticating.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    pub principal: String,
    pub admin: bool,
}

/// A new API key: the secret is shown this once.
#[derive(Clone, PartialEq, Eq)]
pub struct NewApiKey {
    pub key: String,
    pub secret: String,
    pub principal: String,
}

impl Client {
    /// Connects, then authenticates when `options` carry credentials.
    pub async fn connect_with(addr: &str, options: &ConnectOptions) -> Result<Client> {
        let client = Client::open(addr, options.tls.as_ref()).await?;
        if let Some(c) = &options.credentials {
            client.authenticate(&c.key, &c.secret).await?;
        }
        Ok(client)
    }

    /// Proves who this connection is; later requests act as that principal.
    pub async fn authenticate(&self, key: &str, secret: &str) -> Result<Authenticated> {
        self.request(RequestBody::Authenticate { key, secret }, |r| match r {
            ResponseBody::Authenticated { principal, admin } => {
                Some(Authenticated { principal: principal.to_string(), admin })
            }
            _ => None,
        })
        .await
    }

    pub async fn create_api_key(&self, principal: &str, admin: bool, description: Option<&str>) -> Result<NewApiKey> {
        self.request(RequestBody::CreateApiKey { principal, admin, description }, |r| match r {
            ResponseBody::ApiKeyCreated { key, secret, principal } => {
                Some(NewApiKey { key: key.into(), secret: secret.into(), principal: principal.into() })
            }
            _ => None,
        })
        .await
    }

    pub async fn list_api_keys(&self) -> Result<Vec<ApiKeyInfo>> {
        self.request(RequestBody::ListApiKeys, |r| match r {
            ResponseBody::ApiKeys { keys } => Some(keys),
            _ => None,
        })
        .await
    }

    pub async fn revoke_api_key(&self, key: &str) -> Result<()> {
        self.request(RequestBody::RevokeApiKey { key }, |r| matches!(r, ResponseBody::Done).then_some(())).await
    }

    /// Adds an access rule; returns its id.
    pub async fn add_acl(&self, rule: AclRule) -> Result<u64> {
        self.request(RequestBody::AddAcl { rule }, |r| match r {
            ResponseBody::AclAdded { id } => Some(id),
            _ => None,
        })
        .await
    }

    pub async fn list_acls(&self, principal: Option<&str>) -> Result<Vec<AclEntry>> {
        self.request(RequestBody::ListAcls { principal }, |r| match r {
            ResponseBody::Acls { rules } => Some(rules),
            _ => None,
        })
        .await
    }

    pub async fn remove_acl(&self, id: u64) -> Result<()> {
        self.request(RequestBody::RemoveAcl { id }, |r| matches!(r, ResponseBody::Done).then_some(())).await
    }
}
