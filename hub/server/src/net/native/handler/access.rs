//! Who the connection is and what each request needs: `authenticate`
//! (API key and secret), the permission check run before every other
//! request, and the admin requests for keys and ACL rules.

use std::sync::Arc;

use cairn_proto::acl::{Operation, ResourceKind};
use cairn_proto::frame::{ErrorCode, RequestBody, ResponseBody};

use super::Handler;
use crate::auth::{AuthError, Principal};

/// How a connection proves who it is.
#[derive(Debug, Clone)]
pub(crate) enum Identity {
    /// A TCP client: `authenticate` with an API key. The address is where
    /// failed attempts are counted. A verified TLS client certificate names
    /// the principal until then.
    Key { peer: std::net::IpAddr, certificate: Option<Principal> },
    /// A serial line: the principal configured for it (physical access
    /// to the line stands for the key).
    Fixed(Principal),
}

/// One permission a request needs.
type Need<'a> = (Operation, ResourceKind, &'a str);

impl Handler {
    /// Who the connection acts as now: the principal it authenticated as
    /// (while its key holds), else what unauthenticated clients get.
    pub(super) fn principal(&self) -> Result<Arc<Principal>, AuthError> {
        let auth = self.broker.auth();
        let current = self.principal.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match current {
            Some(p) if auth.still_valid(&p) => Ok(p),
            Some(p) => Err(match &p.key {
                Some(key) => AuthError::UnknownKey(format!("{key} (revoked)")),
                None => AuthError::Required,
            }),
            None => auth.unauthenticated().map(Arc::new),
        }
    }

    /// Whether the connection may do `op` to a `kind` resource called `name`.
    pub(super) fn may(&self, op: Operation, kind: ResourceKind, name: &str) -> bool {
        self.principal().is_ok_and(|p| self.broker.auth().allows(&p, None, op, kind, name))
    }

    /// Checks what `body` needs; on refusal the client has been answered
    /// and `false` is returned.
    pub(super) async fn permitted(&self, id: u32, body: &RequestBody<'_>) -> bool {
        let principal = match self.principal() {
            Ok(p) => p,
            Err(err) => {
                self.send_error(id, ErrorCode::Unauthenticated, &err.to_string()).await;
                return false;
            }
        };
        let auth = self.broker.auth();
        for (op, kind, name) in self.needs(body) {
            if !auth.allows(&principal, None, op, kind, name) {
                let what =
                    if kind == ResourceKind::Cluster { "the hub".to_string() } else { format!("{kind} '{name}'") };
                let message = format!(
                    "principal '{}' may not {op} {what}: no ACL rule allows it (docs/security.md)",
                    principal.name
                );
                self.send_error(id, ErrorCode::NotAuthorized, &message).await;
                return false;
            }
        }
        true
    }

    /// The permissions a request needs. Lists need none: they show only
    /// what the principal may describe.
    fn needs<'b>(&self, body: &'b RequestBody<'_>) -> Vec<Need<'b>> {
        use Operation::*;
        use ResourceKind::*;
        match body {
            RequestBody::Hello { .. }
            | RequestBody::Authenticate { .. }
            | RequestBody::AllocateProducerId
            | RequestBody::ListTopics
            | RequestBody::ListGroups
            | RequestBody::ListPlugins => vec![],
            RequestBody::Produce { topic, .. } => vec![(Write, Topic, topic)],
            RequestBody::Fetch { topic, .. } => vec![(Read, Topic, topic)],
            RequestBody::OffsetsForTime { topic, .. } | RequestBody::DescribeTopic { topic } => {
                vec![(Describe, Topic, topic)]
            }
            RequestBody::CreateTopic { topic, .. } => vec![(Create, Topic, topic)],
            RequestBody::AlterTopic { topic, .. } => vec![(Alter, Topic, topic)],
            RequestBody::DeleteTopic { topic } => vec![(Delete, Topic, topic)],
            RequestBody::JoinGroup { group, topics, .. } => {
                let mut needs = vec![(Read, Group, *group)];
                needs.extend(topics.iter().map(|t| (Read, Topic, *t)));
                needs
            }
            RequestBody::Heartbeat { group, .. } | RequestBody::LeaveGroup { group, .. } => vec![(Read, Group, group)],
            RequestBody::CommitOffsets { group, topic, .. } => vec![(Read, Group, group), (Read, Topic, topic)],
            RequestBody::FetchCommitted { group, topic } => vec![(Describe, Group, group), (Describe, Topic, topic)],
            RequestBody::DescribeGroup { group } => vec![(Describe, Group, group)],
            RequestBody::Metrics
            | RequestBody::ListApiKeys
            | RequestBody::ListAcls { .. }
            | RequestBody::ListUplinks => {
                vec![(Describe, Cluster, "")]
            }
            RequestBody::CreateApiKey { .. }
            | RequestBody::RevokeApiKey { .. }
            | RequestBody::AddAcl { .. }
            | RequestBody::RemoveAcl { .. }
            | RequestBody::PauseUplink { .. }
            | RequestBody::AddUplink { .. }
            | RequestBody::RemoveUplink { .. } => vec![(Alter, Cluster, "")],
            RequestBody::UploadPlugin { name, .. } => vec![(Write, Plugin, name)],
            RequestBody::DescribePlugin { name } => vec![(Describe, Plugin, name)],
            RequestBody::Attach { attachment: a } => {
                let mut needs = vec![(Read, Plugin, a.plugin), (Alter, Topic, a.topic)];
                if let Some(out) = a.derived_to {
                    needs.extend([(Read, Topic, a.topic), (Write, Topic, out)]);
                }
                needs
            }
            // Detaching changes the attachment's topic; an unknown
            // attachment is refused by the plugins themselves.
            RequestBody::Detach { .. } => vec![],
            RequestBody::DryRun { plugin, topic, .. } => vec![(Read, Plugin, plugin), (Read, Topic, topic)],
        }
    }

    /// `authenticate`: checks the key; the connection acts as its
    /// principal from the next request on.
    pub(super) async fn authenticate(&self, id: u32, key: &str, secret: &str) {
        let Identity::Key { peer, .. } = &self.identity else {
            let message = "this connection's principal is set by the hub's configuration (serial line)";
            return self.send_error(id, ErrorCode::InvalidConfig, message).await;
        };
        match self.broker.auth().authenticate(*peer, key, secret).await {
            Ok(principal) => {
                let body = ResponseBody::Authenticated { principal: &principal.name, admin: principal.admin };
                self.send(id, body).await;
                *self.principal.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(principal));
            }
            Err(err) => self.send_error(id, ErrorCode::Unauthenticated, &err.to_string()).await,
        }
    }

    /// Keys and rules: `cairn auth key …` and `cairn acl …`.
    pub(super) async fn access_request(&self, id: u32, body: RequestBody<'_>) {
        let auth = self.broker.auth();
        let result = match body {
            RequestBody::CreateApiKey { principal, admin, description } => {
                match auth.create_key(principal, admin, description.unwrap_or_default()).await {
                    Ok((key, secret)) => {
                        return self
                            .send(id, ResponseBody::ApiKeyCreated { key: &key, secret: &secret, principal })
                            .await;
                    }
                    Err(err) => Err(err),
                }
            }
            RequestBody::ListApiKeys => return self.send(id, ResponseBody::ApiKeys { keys: auth.keys() }).await,
            RequestBody::RevokeApiKey { key } => auth.revoke_key(key).await.map(|()| ResponseBody::Done),
            RequestBody::AddAcl { rule } => auth.add_rule(rule).await.map(|id| ResponseBody::AclAdded { id }),
            RequestBody::ListAcls { principal } => Ok(ResponseBody::Acls { rules: auth.rules(principal) }),
            RequestBody::RemoveAcl { id: rule } => auth.remove_rule(rule).await.map(|()| ResponseBody::Done),
            _ => return self.send_error(id, ErrorCode::UnknownRequest, "not an access request").await,
        };
        match result {
            Ok(body) => self.send(id, body).await,
            Err(err) => {
                let code = match &err {
                    AuthError::UnknownKey(_) => ErrorCode::UnknownApiKey,
                    AuthError::UnknownRule(_) => ErrorCode::UnknownAcl,
                    AuthError::Invalid(_) => ErrorCode::InvalidConfig,
                    AuthError::BadCredentials | AuthError::Required => ErrorCode::Unauthenticated,
                    AuthError::Random(_) | AuthError::Hash(_) | AuthError::Corrupt(_) | AuthError::Log(_) => {
                        ErrorCode::Storage
                    }
                };
                self.send_error(id, code, &err.to_string()).await;
            }
        }
    }
}
