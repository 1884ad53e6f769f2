//! `cairn serve`: settings from flags, environment and a TOML file (see
//! `config`), then the log, the broker, the plugins and every listener, until
//! Ctrl-C or SIGTERM.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use cairn_hub::auth::{Auth, Principal};
use cairn_hub::broker::{Broker, UplinkFuture};
use cairn_hub::net::mqtt::Transport;
use cairn_hub::net::tls::Tls;
use cairn_hub::net::{self, native::NativeLimits};
use cairn_hub::plugins::Plugins;
use cairn_log::Log;
use clap::Args;

use cairn_config::{
    Addrs, AuthSettings, HttpSettings, LogSettings, MqttSettings, NativeSettings, PluginSettings, SerialSettings,
    Settings, TlsSettings,
};

use crate::config::ServeConfig;
use crate::{shutdown_signal, AnyError};

#[derive(Args)]
pub struct ServeArgs {
    /// TOML config file (keys as in docs: data_dir, [native], [log]); flags
    /// and environment variables override it.
    #[arg(long, env = "CAIRN_CONFIG")]
    config: Option<PathBuf>,
    /// Directory holding the log database, created if missing [default: cairn-data].
    #[arg(long, env = "CAIRN_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Let clients without an API key in, as the `anonymous` principal (its
    /// ACL rules decide what it may do; with no key at all, everything), and
    /// allow listening beyond loopback with no key [default: false].
    #[arg(long, env = "CAIRN_ALLOW_ANONYMOUS")]
    allow_anonymous: Option<bool>,
    /// Address of the native protocol listener; port 0 picks a free port
    /// [default: 127.0.0.1:7878 while no API key exists, then 0.0.0.0:7878].
    #[arg(long, env = "CAIRN_NATIVE_ADDR")]
    native_addr: Option<SocketAddr>,
    /// Most native-protocol connections open at once [default: 1024].
    #[arg(long, env = "CAIRN_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
    /// Largest native-protocol frame accepted, in bytes [default: 8 MiB].
    #[arg(long, env = "CAIRN_MAX_FRAME_BYTES")]
    max_frame_bytes: Option<usize>,
    /// Address of an MQTT listener (3.1.1 and 5); repeat for several; port 0
    /// picks a free port [default: 127.0.0.1:1883 while no API key exists,
    /// then 0.0.0.0:1883].
    #[arg(long, env = "CAIRN_MQTT_ADDR", value_delimiter = ',')]
    mqtt_addr: Vec<SocketAddr>,
    /// Address of a native protocol listener speaking TLS [default: off].
    #[arg(long, env = "CAIRN_NATIVE_TLS_ADDR")]
    native_tls_addr: Option<SocketAddr>,
    /// Address of an MQTT listener speaking TLS (MQTT's usual port is
    /// 8883); repeat for several [default: off].
    #[arg(long, env = "CAIRN_MQTT_TLS_ADDR", value_delimiter = ',')]
    mqtt_tls_addr: Vec<SocketAddr>,
    /// Address of an MQTT-over-WebSocket listener (`ws://`, for browser
    /// clients); repeat for several [default: off].
    #[arg(long, env = "CAIRN_MQTT_WS_ADDR", value_delimiter = ',')]
    mqtt_ws_addr: Vec<SocketAddr>,
    /// Address of an MQTT-over-secure-WebSocket listener (`wss://`, with
    /// the TLS certificate); repeat for several [default: off].
    #[arg(long, env = "CAIRN_MQTT_WSS_ADDR", value_delimiter = ',')]
    mqtt_wss_addr: Vec<SocketAddr>,
    /// The TLS listeners' certificate chain (PEM), reloaded on SIGHUP.
    #[arg(long, env = "CAIRN_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// The TLS listeners' private key (PEM), reloaded on SIGHUP.
    #[arg(long, env = "CAIRN_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// Accept client certificates signed by this CA (PEM): their common
    /// name is the connection's principal (mutual TLS) [default: off].
    #[arg(long, env = "CAIRN_TLS_CLIENT_CA")]
    tls_client_ca: Option<PathBuf>,
    /// Serve MQTT at all [default: true].
    #[arg(long, env = "CAIRN_MQTT")]
    mqtt: Option<bool>,
    /// Address of the HTTP listener: status page, Prometheus `/metrics`,
    /// `/healthz` and `/readyz`; port 0 picks a free port [default:
    /// 127.0.0.1:7880 while no API key exists, then 0.0.0.0:7880].
    #[arg(long, env = "CAIRN_HTTP_ADDR")]
    http_addr: Option<SocketAddr>,
    /// Serve HTTP at all [default: true].
    #[arg(long, env = "CAIRN_HTTP")]
    http: Option<bool>,
    /// Serial-over-TCP listener: each connection is one serial line speaking
    /// COBS-framed native protocol (QEMU `-serial tcp:`, ser2net) [default: off].
    #[arg(long, env = "CAIRN_SERIAL_TCP_ADDR")]
    serial_tcp_addr: Option<SocketAddr>,
    /// Serial device of the gateway to read devices from, e.g. /dev/ttyUSB0 [default: off].
    #[arg(long, env = "CAIRN_SERIAL_DEVICE")]
    serial_device: Option<PathBuf>,
    /// Baud rate of --serial-device [default: 115200].
    #[arg(long, env = "CAIRN_SERIAL_BAUD")]
    serial_baud: Option<u32>,
    /// The `[log]` settings, the same struct the TOML file fills.
    #[command(flatten)]
    log: LogSettings,
    /// Run WebAssembly plugins (uploads, attachments) [default: true].
    #[arg(long, env = "CAIRN_PLUGINS")]
    plugins: Option<bool>,
}

impl ServeArgs {
    /// The settings given on the command line or in the environment.
    fn overrides(&self) -> Settings {
        Settings {
            data_dir: self.data_dir.clone(),
            auth: AuthSettings { allow_anonymous: self.allow_anonymous },
            tls: TlsSettings {
                cert_file: self.tls_cert.clone(),
                key_file: self.tls_key.clone(),
                client_ca_file: self.tls_client_ca.clone(),
            },
            native: NativeSettings {
                addr: self.native_addr,
                tls_addr: self.native_tls_addr,
                max_connections: self.max_connections,
                max_frame_bytes: self.max_frame_bytes,
            },
            mqtt: MqttSettings {
                addr: (!self.mqtt_addr.is_empty()).then(|| Addrs::Many(self.mqtt_addr.clone())),
                tls_addr: (!self.mqtt_tls_addr.is_empty()).then(|| Addrs::Many(self.mqtt_tls_addr.clone())),
                ws_addr: (!self.mqtt_ws_addr.is_empty()).then(|| Addrs::Many(self.mqtt_ws_addr.clone())),
                wss_addr: (!self.mqtt_wss_addr.is_empty()).then(|| Addrs::Many(self.mqtt_wss_addr.clone())),
                enabled: self.mqtt,
                ..MqttSettings::default()
            },
            http: HttpSettings { addr: self.http_addr, enabled: self.http },
            serial: SerialSettings {
                tcp_addr: self.serial_tcp_addr,
                device: self.serial_device.clone(),
                baud: self.serial_baud,
                principal: None,
            },
            log: self.log.clone(),
            plugins: PluginSettings { enabled: self.plugins, ..PluginSettings::default() },
            uplink: Vec::new(),
        }
    }
}

pub async fn run(args: ServeArgs) -> Result<(), AnyError> {
    let file = match &args.config {
        Some(path) => Settings::load(path)?,
        None => Settings::default(),
    };
    let args = ServeConfig::resolve(&file, &args.overrides());
    std::fs::create_dir_all(&args.data_dir)
        .map_err(|e| format!("cannot create data directory {}: {e}", args.data_dir.display()))?;
    let path = args.data_dir.join("cairn.redb");
    let options = args.log.clone();
    let log = Log::open(&path, options).map_err(|e| format!("cannot open the log at {}: {e}", path.display()))?;
    let auth = Auth::open(log.clone(), args.allow_anonymous).map_err(|e| format!("cannot load API keys: {e}"))?;
    let Addresses { native: native_addr, mqtt: mqtt_addrs, http: http_addr } = listen_addrs(&args, auth.required())?;
    let mut broker = Broker::new(log.clone()).with_auth(auth.clone());
    let mut plugins = None;
    if args.plugins_enabled {
        let cache = args.data_dir.join("plugin-cache");
        let loaded = Plugins::open(log.clone(), auth, &cache, args.plugin_defaults)
            .await
            .map_err(|e| format!("cannot start the plugin runtime: {e}"))?;
        broker = broker.with_plugins(loaded.clone());
        plugins = Some(loaded);
    }
    let tls = load_tls(&args)?;
    let listener = net::native::bind(native_addr)
        .await
        .map_err(|e| format!("cannot listen on {native_addr} (native protocol): {e}"))?;
    let limits = NativeLimits {
        max_connections: args.max_connections.max(1),
        max_frame_bytes: args.max_frame_bytes.max(1024),
        ..NativeLimits::default()
    };
    let stop = shutdown_signal().map_err(|e| format!("cannot install signal handlers: {e}"))?;
    let (trigger, shutdown) = net::shutdown_channel();
    let mut listeners = Vec::new();
    let any_mqtt = !mqtt_addrs.is_empty()
        || !args.mqtt_tls_addrs.is_empty()
        || !args.mqtt_ws_addrs.is_empty()
        || !args.mqtt_wss_addrs.is_empty();
    let mapping = net::mqtt::mapping::Mapping::new(&args.mqtt_mapping)
        .map_err(|e| format!("invalid [[mqtt.mapping]] in the config: {e}"))?;
    // Clients publish replies to it: it must be a topic they can publish to.
    let response_information = &args.mqtt_response_information;
    if response_information.contains(['+', '#', '\0']) || response_information.starts_with('$') {
        return Err(format!(
            "invalid [mqtt] response_information {response_information:?}: it must be a topic name clients can publish to (no '+', '#', or leading '$'; %c stands for the client id)"
        )
        .into());
    }
    let config = net::mqtt::MqttConfig {
        max_packet_bytes: args.mqtt_max_packet_bytes.max(1024),
        max_inflight: args.mqtt_max_inflight.max(1),
        max_connections: args.mqtt_max_connections.max(1),
        max_subscriptions: args.mqtt_max_subscriptions.max(1),
        max_keep_alive_secs: args.mqtt_max_keep_alive_secs.max(1),
        max_retained_messages: args.mqtt_max_retained_messages,
        max_retained_bytes: args.mqtt_max_retained_bytes,
        max_sessions: args.mqtt_max_sessions,
        max_queued_messages: args.mqtt_max_queued_messages,
        topic_partitions: args.mqtt_topic_partitions.max(1),
        sys_interval_secs: args.mqtt_sys_interval_secs,
        write_timeout_secs: args.mqtt_write_timeout_secs.max(1),
        // A Receive Maximum of 0 is a protocol error (5.0 §3.2.2.3.3).
        receive_maximum: args.mqtt_receive_maximum.max(1),
        response_information: args.mqtt_response_information.clone(),
        mapping,
    };
    // Shared by the MQTT listeners and the uplinks (what comes down from an
    // upstream broker is published here as a local client would).
    let mqtt = net::mqtt::MqttHub::new(broker.clone(), config);
    if any_mqtt {
        let mut mqtt_listeners = Vec::new();
        for &addr in &mqtt_addrs {
            let listener = net::mqtt::bind(addr).await.map_err(|e| format!("cannot listen on {addr} (MQTT): {e}"))?;
            mqtt_listeners.push((listener, Transport::Tcp));
        }
        for &addr in &args.mqtt_tls_addrs {
            let listener =
                net::mqtt::bind_tls(addr).await.map_err(|e| format!("cannot listen on {addr} (MQTT over TLS): {e}"))?;
            // `load_tls` made sure there is a certificate.
            if let Some(tls) = tls.clone() {
                mqtt_listeners.push((listener, Transport::Tls(tls)));
            }
        }
        for &addr in &args.mqtt_ws_addrs {
            let listener = net::mqtt::bind_ws(addr)
                .await
                .map_err(|e| format!("cannot listen on {addr} (MQTT over WebSocket): {e}"))?;
            mqtt_listeners.push((listener, Transport::WebSocket));
        }
        for &addr in &args.mqtt_wss_addrs {
            let listener = net::mqtt::bind_wss(addr)
                .await
                .map_err(|e| format!("cannot listen on {addr} (MQTT over secure WebSocket): {e}"))?;
            if let Some(tls) = tls.clone() {
                mqtt_listeners.push((listener, Transport::SecureWebSocket(tls)));
            }
        }
        listeners.push(tokio::spawn(net::mqtt::serve(mqtt_listeners, mqtt.clone(), shutdown.clone())));
    }
    // The operator's view: status page, /metrics, health.
    let console = cairn_console::Console::new(broker.clone(), mqtt.clone(), args.data_dir.clone(), path.clone());
    if let Some(addr) = http_addr {
        match cairn_console::bind(addr).await {
            Ok(listener) => {
                listeners.push(tokio::spawn(cairn_console::serve(listener, console.clone(), shutdown.clone())));
            }
            // The default port taken (a second hub on the box): the hub
            // runs without its page rather than not at all. An address
            // asked for is a hard error, as for every listener.
            Err(e) if args.http_addr.is_none() && e.kind() == std::io::ErrorKind::AddrInUse => {
                tracing::warn!(%addr, "HTTP port in use: no status page or /metrics; set [http] addr (--http-addr)")
            }
            Err(e) => return Err(format!("cannot listen on {addr} (HTTP): {e}").into()),
        }
    }
    let mut serial = Vec::new();
    if let Some(addr) = args.serial_tcp_addr {
        let listener =
            net::serial::bind(addr).await.map_err(|e| format!("cannot listen on {addr} (serial over TCP): {e}"))?;
        let principal = Principal::named(&args.serial_principal);
        let serve = net::serial::serve_tcp(listener, principal, broker.clone(), limits.clone(), shutdown.clone());
        serial.push(tokio::spawn(serve));
    }
    if let Some(path) = args.serial_device.clone() {
        let device = net::serial::SerialDevice { path, baud: args.serial_baud };
        let principal = Principal::named(&args.serial_principal);
        let serve = net::serial::serve_device(device, principal, broker.clone(), limits.clone(), shutdown.clone());
        serial.push(tokio::spawn(serve));
    }
    if let Some(addr) = args.native_tls_addr {
        let tls_listener = net::native::bind_tls(addr)
            .await
            .map_err(|e| format!("cannot listen on {addr} (native protocol over TLS): {e}"))?;
        let serve = net::native::serve(tls_listener, tls.clone(), broker.clone(), limits.clone(), shutdown.clone());
        listeners.push(tokio::spawn(serve));
    }
    if let Some(tls) = tls {
        reload_on_sighup(tls)?;
    }
    let uplinks = start_uplinks(&log, &args.uplinks, mqtt)?;
    let control: Arc<dyn cairn_hub::broker::UplinkControl> = uplinks.clone();
    broker.set_uplinks(&control);
    let native = tokio::spawn(net::native::serve(listener, None, broker, limits, shutdown));
    // Every listener is bound (and accepting: the sockets queue
    // connections until their tasks run): ready.
    console.set_ready(true);
    let topics = log.list_topics();
    tracing::info!(
        data = %path.display(),
        topics = topics.len(),
        "cairn is running; stop with Ctrl-C"
    );
    stop.await;
    tracing::info!("shutting down: closing connections, finishing queued commits");
    console.set_ready(false);
    trigger.trigger();
    let _ = native.await;
    for listener in serial.into_iter().chain(listeners) {
        let _ = listener.await;
    }
    // The listeners returned once their connections had answered what was
    // in flight; derived topics finish their batch; then the log finishes
    // its queued commits and closes the database.
    uplinks.0.shutdown().await;
    if let Some(plugins) = plugins {
        plugins.shutdown().await;
    }
    log.close().await?;
    tracing::info!("stopped");
    Ok(())
}

/// Starts the `[[uplink]]`s of the config; what they bring down from an
/// upstream broker is published through the hub's MQTT side.
fn start_uplinks(
    log: &Log,
    settings: &[cairn_uplink::UplinkSettings],
    mqtt: net::mqtt::MqttHub,
) -> Result<Arc<HubUplinks>, AnyError> {
    let specs = settings
        .iter()
        .map(cairn_uplink::UplinkSpec::try_from)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("invalid [[uplink]] in the config: {e}"))?;
    for spec in &specs {
        tracing::info!(uplink = %spec.name, kind = spec.kind(), upstream = %spec.upstream(), topics = ?spec.topics, "starting uplink");
    }
    let sink: Arc<dyn cairn_uplink::LocalSink> = Arc::new(HubSink(mqtt));
    Ok(Arc::new(HubUplinks(cairn_uplink::Uplinks::start(log.clone(), specs, Some(sink))?)))
}

/// The uplinks, as the native protocol's requests reach them.
struct HubUplinks(cairn_uplink::Uplinks);

impl cairn_hub::broker::UplinkControl for HubUplinks {
    fn list(&self) -> Vec<cairn_proto::frame::UplinkInfo> {
        self.0.describe()
    }

    fn set_paused(&self, name: &str, paused: bool) -> Result<(), String> {
        let done = if paused { self.0.pause(name) } else { self.0.resume(name) };
        done.map_err(|e| e.to_string())
    }

    fn add<'a>(&'a self, settings: &'a str) -> UplinkFuture<'a, cairn_proto::frame::UplinkInfo> {
        Box::pin(async move { self.0.add(settings).await.map_err(|e| e.to_string()) })
    }

    fn remove<'a>(&'a self, name: &'a str) -> UplinkFuture<'a, ()> {
        Box::pin(async move { self.0.remove(name).await.map_err(|e| e.to_string()) })
    }
}

/// The hub's MQTT publish path, as the uplinks see it.
struct HubSink(net::mqtt::MqttHub);

impl cairn_uplink::LocalSink for HubSink {
    fn publish<'a>(
        &'a self,
        topic: &'a str,
        payload: &'a [u8],
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send + 'a>> {
        Box::pin(self.0.publish(topic, payload))
    }
}

/// Where the listeners with a default address bind.
struct Addresses {
    native: SocketAddr,
    mqtt: Vec<SocketAddr>,
    /// `None`: HTTP is off.
    http: Option<SocketAddr>,
}

/// Where the native, MQTT and HTTP listeners bind. As Mosquitto 2.0 does, a
/// hub without credentials serves loopback only: unset addresses default
/// to 127.0.0.1 until an API key exists (then to every interface), and an
/// address beyond loopback with no key needs an explicit `allow_anonymous`.
fn listen_addrs(args: &ServeConfig, keys_exist: bool) -> Result<Addresses, AnyError> {
    let host = if keys_exist { IpAddr::V4(Ipv4Addr::UNSPECIFIED) } else { IpAddr::V4(Ipv4Addr::LOCALHOST) };
    let native = args.native_addr.unwrap_or(SocketAddr::new(host, 7878));
    let mqtt = args.mqtt_addrs.clone().unwrap_or_else(|| vec![SocketAddr::new(host, 1883)]);
    let http = args.http_enabled.then(|| args.http_addr.unwrap_or(SocketAddr::new(host, 7880)));
    // Every listener counts, TLS and WebSocket ones too.
    let others = args
        .serial_tcp_addr
        .into_iter()
        .chain(args.native_tls_addr)
        .chain(args.mqtt_tls_addrs.iter().copied())
        .chain(args.mqtt_ws_addrs.iter().copied())
        .chain(args.mqtt_wss_addrs.iter().copied())
        .chain(http);
    let exposed: Vec<SocketAddr> =
        std::iter::once(native).chain(mqtt.iter().copied()).chain(others).filter(|a| !a.ip().is_loopback()).collect();
    if keys_exist {
        let anonymous = if args.allow_anonymous { "; clients without a key act as `anonymous`" } else { "" };
        tracing::info!("API keys exist: every client authenticates{anonymous}");
    } else if exposed.is_empty() {
        tracing::info!(
            "no API key yet: serving loopback only, where every client may do everything; \
             create an admin key (`cairn auth key create --principal admin --admin`) to serve the network"
        );
    } else if args.allow_anonymous {
        tracing::warn!(
            addrs = ?exposed,
            "allow_anonymous with no API key: anyone who can reach these addresses may do anything"
        );
    } else {
        let addrs: Vec<String> = exposed.iter().map(ToString::to_string).collect();
        return Err(format!(
            "refusing to listen on {} with no API key: anyone on the network could do anything. \
             Create an admin key first (`cairn auth init --data-dir {}`), or set allow_anonymous = true \
             (--allow-anonymous true) to run an open hub (docs/security.md)",
            addrs.join(", "),
            args.data_dir.display()
        )
        .into());
    }
    Ok(Addresses { native, mqtt, http })
}

/// The TLS settings of the TLS listeners, when any is configured.
fn load_tls(args: &ServeConfig) -> Result<Option<Arc<Tls>>, AnyError> {
    let wanted = args.native_tls_addr.is_some() || !args.mqtt_tls_addrs.is_empty() || !args.mqtt_wss_addrs.is_empty();
    match (&args.tls, wanted) {
        (Some(files), true) => Ok(Some(Tls::load(files.clone())?)),
        (None, true) => Err("a TLS listener needs [tls] cert_file and key_file (--tls-cert, --tls-key)".into()),
        (_, false) => Ok(None),
    }
}

/// SIGHUP reads the certificate and key files again (a renewed
/// certificate); new connections use them, open ones keep theirs.
fn reload_on_sighup(tls: Arc<Tls>) -> Result<(), AnyError> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangups = signal(SignalKind::hangup()).map_err(|e| format!("cannot install the SIGHUP handler: {e}"))?;
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            match tls.reload() {
                Ok(()) => tracing::info!("SIGHUP: TLS certificate and key reloaded"),
                Err(err) => tracing::error!(error = %err, "SIGHUP: TLS files not reloaded; keeping the current ones"),
            }
        }
    });
    Ok(())
}
