//! systemd readiness and watchdog notifications (`Type=notify`, `WatchdogSec=`).
//!
//! The protocol is one datagram per message to the socket named by `NOTIFY_SOCKET` (a path, or
//! an abstract socket when it starts with '@'); without that variable every call is a no-op, so
//! the same binary runs under systemd, in a container or in a terminal.

use std::time::Duration;

/// Where to send notifications, read once from the environment.
#[derive(Clone, Debug, Default)]
pub struct Notifier {
    socket: Option<String>,
    watchdog: Option<Duration>,
}

impl Notifier {
    pub fn from_env() -> Notifier {
        let socket = std::env::var("NOTIFY_SOCKET")
            .ok()
            .filter(|s| !s.is_empty());
        // systemd sets WATCHDOG_PID to the process that must ping; honour it when present.
        let for_us = std::env::var("WATCHDOG_PID")
            .ok()
            .and_then(|p| p.parse::<u32>().ok())
            .is_none_or(|p| p == std::process::id());
        let watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|_| for_us)
            .map(Duration::from_micros);
        Notifier { socket, watchdog }
    }

    /// How often to ping the watchdog: half its timeout, as sd_watchdog_enabled(3) advises.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog.map(|d| d / 2)
    }

    pub fn ready(&self) {
        self.send("READY=1");
    }

    pub fn stopping(&self) {
        self.send("STOPPING=1");
    }

    pub fn watchdog(&self) {
        self.send("WATCHDOG=1");
    }

    pub fn status(&self, text: &str) {
        self.send(&format!("STATUS={}", text.replace('\n', " ")));
    }

    fn send(&self, message: &str) {
        let Some(path) = &self.socket else {
            return;
        };
        if let Err(e) = send_datagram(path, message) {
            tracing::warn!(socket = %path, error = %e, "sd_notify failed");
        }
    }
}

#[cfg(unix)]
fn send_datagram(path: &str, message: &str) -> std::io::Result<()> {
    use std::os::unix::net::UnixDatagram;
    let sock = UnixDatagram::unbound()?;
    if let Some(name) = path.strip_prefix('@') {
        #[cfg(target_os = "linux")]
        {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
            sock.send_to_addr(message.as_bytes(), &addr)?;
            return Ok(());
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = name;
            return Err(std::io::Error::other("abstract sockets need Linux"));
        }
    }
    sock.send_to(message.as_bytes(), path)?;
    Ok(())
}

#[cfg(not(unix))]
fn send_datagram(_path: &str, _message: &str) -> std::io::Result<()> {
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn sends_datagrams_to_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let listener = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        let n = Notifier {
            socket: Some(path.display().to_string()),
            watchdog: Some(Duration::from_secs(30)),
        };
        n.ready();
        n.watchdog();
        let mut buf = [0u8; 64];
        let len = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1");
        let len = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"WATCHDOG=1");
        assert_eq!(n.watchdog_interval(), Some(Duration::from_secs(15)));
        // Without a socket nothing is sent and nothing fails.
        Notifier::default().ready();
    }
}
