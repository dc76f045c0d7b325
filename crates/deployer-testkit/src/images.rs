//! Test images built from nothing: `FROM scratch` plus Debian's static busybox, through the
//! Engine API, so no image ever needs to be pulled.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, bail};
use bollard::Docker;
use bollard::query_parameters::BuildImageOptionsBuilder;
use futures_util::StreamExt;

/// Where Debian's `busybox-static` puts its binary.
pub const BUSYBOX: &str = "/bin/busybox";
/// Port the HTTP test apps listen on inside their container.
pub const HTTP_PORT: u16 = 8080;
/// Port the TCP test app listens on inside its container.
pub const TCP_PORT: u16 = 9000;

/// What a test image does when it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum App {
    /// `busybox httpd` on [`HTTP_PORT`]: `/` answers the version, `/health` answers `ok`.
    Http {
        /// Body of `/`.
        version: String,
    },
    /// Like `Http`, after sleeping `boot` (a slow boot).
    SlowHttp {
        /// Body of `/`.
        version: String,
        /// Sleep before serving.
        boot: Duration,
    },
    /// Like `Http`, then exits (code 1) `after` it started: passes its probe, then crashes.
    CrashingHttp {
        /// Body of `/`.
        version: String,
        /// Uptime before the crash.
        after: Duration,
    },
    /// Like `Http`, but `/` answers 500 (a CGI script): healthy by its probe, failing every
    /// client.
    ServerErrors {
        /// Body of the 500 answer.
        version: String,
    },
    /// Like `Http`, but every `every`-th answer of `/` is a 500 (a CGI script counting its
    /// calls): healthy by its probe, failing a share of its clients.
    SomeServerErrors {
        /// Body of every answer.
        version: String,
        /// One answer in this many fails.
        every: u32,
    },
    /// Runs forever without listening: never becomes healthy.
    NeverHealthy,
    /// Exits with status 1 at once.
    ExitsAtStart,
    /// A TCP server on [`TCP_PORT`] that sends the version line and then echoes.
    Tcp {
        /// First line sent.
        version: String,
    },
}

impl App {
    /// An HTTP app answering `version`.
    pub fn http(version: &str) -> Self {
        Self::Http {
            version: version.to_owned(),
        }
    }

    fn command(&self) -> String {
        let httpd = format!("exec httpd -f -p {HTTP_PORT} -h /www");
        let cmd = match self {
            Self::Http { .. } | Self::ServerErrors { .. } | Self::SomeServerErrors { .. } => httpd,
            Self::SlowHttp { boot, .. } => format!("sleep {} && {httpd}", boot.as_secs_f32()),
            Self::CrashingHttp { after, .. } => format!(
                "httpd -f -p {HTTP_PORT} -h /www & sleep {} && exit 1",
                after.as_secs_f32()
            ),
            Self::NeverHealthy => "exec sleep 100000".to_owned(),
            Self::ExitsAtStart => "exit 1".to_owned(),
            Self::Tcp { .. } => format!("exec nc -ll -p {TCP_PORT} -e /bin/tcp-app"),
        };
        format!("[\"/bin/sh\", \"-c\", {cmd:?}]")
    }

    fn version(&self) -> &str {
        match self {
            Self::Http { version }
            | Self::SlowHttp { version, .. }
            | Self::CrashingHttp { version, .. }
            | Self::ServerErrors { version }
            | Self::SomeServerErrors { version, .. }
            | Self::Tcp { version } => version,
            Self::NeverHealthy | Self::ExitsAtStart => "none",
        }
    }
}

/// How to build a test image.
#[derive(Debug, Clone)]
pub struct ImageSpec {
    /// What it runs.
    pub app: App,
    /// Adds a Docker `HEALTHCHECK` that fetches `/health` every second.
    pub healthcheck: bool,
    /// Labels to put on the image (use [`crate::sweep::Sweep::labels`]).
    pub labels: Vec<(String, String)>,
}

/// Connects to the local engine and negotiates the API version (the engine here speaks 1.41).
pub async fn docker() -> Docker {
    let docker = Docker::connect_with_local_defaults().expect(
        "Docker engine: cannot build a client for the local socket (is DOCKER_HOST valid?)",
    );
    docker
        .negotiate_version()
        .await
        .expect("Docker engine unreachable: tests need a running engine on the local socket")
}

/// Builds `spec` and tags it `tag`; returns the image ID.
pub async fn build(docker: &Docker, tag: &str, spec: &ImageSpec) -> anyhow::Result<String> {
    let context = context(spec).context("assembling the build context")?;
    let labels: HashMap<String, String> = spec.labels.iter().cloned().collect();
    let options = BuildImageOptionsBuilder::new()
        .t(tag)
        .rm(true)
        .forcerm(true)
        .labels(&labels)
        .build();
    let mut stream = docker.build_image(options, None, Some(bollard::body_full(context.into())));
    let mut id = None;
    let mut log = Vec::new();
    while let Some(item) = stream.next().await {
        let info = item.with_context(|| format!("building {tag}"))?;
        if let Some(error) = info.error {
            bail!("building {tag} failed: {error} (log: {})", log.join(""));
        }
        if let Some(line) = info.stream {
            log.push(line);
        }
        if let Some(aux) = info.aux
            && let Some(image_id) = aux.id
        {
            id = Some(image_id);
        }
    }
    match id {
        Some(id) => Ok(id),
        None => {
            let inspect = docker
                .inspect_image(tag)
                .await
                .with_context(|| format!("inspecting {tag} after build"))?;
            inspect.id.context("built image has no id")
        }
    }
}

fn nonce() -> String {
    static BUILDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let n = BUILDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{}-{nanos}-{n}\n", std::process::id())
}

fn context(spec: &ImageSpec) -> anyhow::Result<Vec<u8>> {
    let busybox = std::fs::read(BUSYBOX).with_context(|| {
        format!("{BUSYBOX} not found: install Debian's busybox-static (the test script does this)")
    })?;
    let healthcheck = if spec.healthcheck {
        format!(
            "HEALTHCHECK --interval=1s --timeout=1s --retries=1 CMD [\"/bin/wget\", \"-q\", \"-O\", \"/dev/null\", \"http://127.0.0.1:{HTTP_PORT}/health\"]\n"
        )
    } else {
        String::new()
    };
    let dockerfile = format!(
        "FROM scratch\nCOPY rootfs/ /\nEXPOSE {HTTP_PORT}\n{healthcheck}CMD {}\n",
        spec.app.command()
    );
    let version = spec.app.version();
    let tcp_app = format!("#!/bin/sh\necho {version}\nexec cat\n");
    let mut tar = tar::Builder::new(Vec::new());
    let mut add = |path: &str, mode: u32, data: &[u8]| -> std::io::Result<()> {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(mode);
        header.set_cksum();
        tar.append_data(&mut header, path, data)
    };
    add("Dockerfile", 0o644, dockerfile.as_bytes())?;
    add("rootfs/bin/busybox", 0o755, &busybox)?;
    add("rootfs/bin/tcp-app", 0o755, tcp_app.as_bytes())?;
    if let App::ServerErrors { .. } = spec.app {
        // busybox httpd runs cgi-bin/index.cgi for `/` when there is no index.html.
        let script = format!(
            "#!/bin/sh\nprintf 'HTTP/1.0 500 Internal Server Error\\r\\nContent-Type: text/plain\\r\\n\\r\\n{version}\\n'\n"
        );
        add("rootfs/www/cgi-bin/index.cgi", 0o755, script.as_bytes())?;
    } else if let App::SomeServerErrors { every, .. } = spec.app {
        let script = format!(
            "#!/bin/sh\nn=$(cat /tmp/calls 2>/dev/null || echo 0)\nn=$((n + 1))\necho $n > /tmp/calls\n\
             case $((n % {every})) in 0) status='500 Internal Server Error' ;; *) status='200 OK' ;; esac\n\
             printf 'HTTP/1.0 %s\\r\\nContent-Type: text/plain\\r\\n\\r\\n{version}\\n' \"$status\"\n"
        );
        add("rootfs/www/cgi-bin/index.cgi", 0o755, script.as_bytes())?;
    } else {
        add(
            "rootfs/www/index.html",
            0o644,
            format!("{version}\n").as_bytes(),
        )?;
    }
    add("rootfs/www/health", 0o644, b"ok\n")?;
    add("rootfs/tmp/.keep", 0o644, b"")?;
    // Every build's layer is its own: builds of identical contexts would otherwise share a
    // cached layer that another test's sweep may delete in the middle of this build.
    add("rootfs/etc/build-nonce", 0o644, nonce().as_bytes())?;
    for applet in [
        "sh", "httpd", "sleep", "cat", "wget", "nc", "echo", "env", "true", "false", "printf",
    ] {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_size(0);
        header.set_mode(0o777);
        tar.append_link(&mut header, format!("rootfs/bin/{applet}"), "busybox")?;
    }
    Ok(tar.into_inner()?)
}
