//! The explicit exceptions to the outbound-address policy (`ingest.allow_hosts`): internal
//! addresses that a stream source may reach, each an address, a CIDR block or a host name, with an
//! optional port. Everything else internal stays refused, so a deployment that reads one camera on
//! its LAN does not open the whole LAN (or the node's own services) to every API caller.

use crate::source::{SourceError, is_internal};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// How long a name may take to resolve.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Net { net: IpAddr, len: u8 },
    Name(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    target: Target,
    /// `None`: any port.
    port: Option<u16>,
}

/// Parsed `ingest.allow_hosts`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    rules: Vec<Rule>,
}

fn parse_net(s: &str) -> Option<(IpAddr, u8)> {
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => (a.parse::<IpAddr>().ok()?, Some(l.parse::<u8>().ok()?)),
        None => (s.parse::<IpAddr>().ok()?, None),
    };
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let len = len.unwrap_or(max);
    (len <= max).then_some((addr, len))
}

fn parse_rule(entry: &str) -> Option<Rule> {
    let e = entry.trim();
    let port = |p: &str| p.parse::<u16>().ok().filter(|p| *p > 0);
    if let Some(inner) = e.strip_prefix('[') {
        let (net, rest) = inner.split_once(']')?;
        let (net, len) = parse_net(net)?;
        let port = match rest {
            "" => None,
            r => Some(port(r.strip_prefix(':')?)?),
        };
        return Some(Rule { target: Target::Net { net, len }, port });
    }
    match e.matches(':').count() {
        // IPv6 without a port.
        n if n >= 2 => parse_net(e).map(|(net, len)| Rule { target: Target::Net { net, len }, port: None }),
        n => {
            let (host, p) = if n == 1 {
                let (h, p) = e.rsplit_once(':')?;
                (h, Some(port(p)?))
            } else {
                (e, None)
            };
            if let Some((net, len)) = parse_net(host) {
                return Some(Rule { target: Target::Net { net, len }, port: p });
            }
            let name = host.trim_end_matches('.').to_ascii_lowercase();
            let plain = !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
                && !name.chars().all(|c| c.is_ascii_digit() || c == '.');
            plain.then_some(Rule { target: Target::Name(name), port: p })
        }
    }
}

fn in_net(ip: IpAddr, net: IpAddr, len: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            len == 0 || u32::from(a) >> (32 - len as u32) == u32::from(n) >> (32 - len as u32)
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            len == 0 || u128::from(a) >> (128 - len as u32) == u128::from(n) >> (128 - len as u32)
        }
        _ => false,
    }
}

impl AllowList {
    /// Parses the configured entries; a malformed one is an error naming it (never ignored).
    pub fn parse(entries: &[String]) -> Result<Self, SourceError> {
        let rules = entries
            .iter()
            .map(|e| parse_rule(e).ok_or_else(|| SourceError::BadAllowEntry(e.clone())))
            .collect::<Result<_, _>>()?;
        Ok(Self { rules })
    }

    /// Whether `addr`, reached as `host`, is an allowed exception.
    pub fn permits(&self, host: &str, addr: SocketAddr) -> bool {
        let host = host.trim_end_matches('.');
        self.rules.iter().any(|r| {
            r.port.is_none_or(|p| p == addr.port())
                && match &r.target {
                    Target::Net { net, len } => in_net(addr.ip(), *net, *len),
                    Target::Name(n) => n.eq_ignore_ascii_case(host),
                }
        })
    }

    /// Checks one address the policy would connect to.
    pub fn check(&self, host: &str, addr: SocketAddr) -> Result<(), SourceError> {
        if is_internal(addr.ip()) && !self.permits(host, addr) {
            return Err(SourceError::PrivateHost { host: host.to_string(), addr: addr.ip() });
        }
        Ok(())
    }

    /// Resolves `host` once and checks every address it names: one refused address refuses the
    /// name (a name with one public and one internal address cannot pick its target later). The
    /// caller connects to the returned addresses only (the address is pinned: a second lookup
    /// could answer differently, DNS rebinding).
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, SourceError> {
        let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
        let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((host, port)))
                .await
                .map_err(|_| SourceError::Unresolvable(host.to_string()))?
                .map_err(|_| SourceError::Unresolvable(host.to_string()))?
                .collect(),
        };
        if addrs.is_empty() {
            return Err(SourceError::Unresolvable(host.to_string()));
        }
        for a in &addrs {
            self.check(host, *a)?;
        }
        Ok(addrs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &[&str]) -> AllowList {
        AllowList::parse(&entries.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn parses_every_form_and_refuses_malformed_entries() {
        let l =
            list(&["127.0.0.1:8080", "10.0.0.0/8", "[::1]:1935", "fd00::/8", "cam.lan:554", "192.168.1.7"]);
        let at = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert!(l.permits("x", at("127.0.0.1:8080")));
        assert!(!l.permits("x", at("127.0.0.1:8081")));
        assert!(!l.permits("x", at("127.0.0.2:8080")));
        assert!(l.permits("x", at("10.200.1.1:1")));
        assert!(l.permits("x", at("[::1]:1935")));
        assert!(!l.permits("x", at("[::1]:80")));
        assert!(l.permits("x", at("[fd12::1]:80")));
        assert!(l.permits("CAM.lan.", at("10.9.9.9:554")) && !l.permits("cam.lan", at("192.168.0.1:80")));
        assert!(l.permits("x", at("192.168.1.7:99")) && !l.permits("x", at("192.168.1.8:99")));
        // An IPv4 rule does not admit the same address written as IPv6.
        assert!(!l.permits("x", at("[::ffff:10.0.0.1]:80")));
        for bad in ["", "10.0.0.0/33", "127.0.0.1:0", "127.0.0.1:x", "[::1", "a b", "h:1:2:3:zz", "1.2.3"] {
            assert!(AllowList::parse(&[bad.to_string()]).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn checks_internal_addresses_only() {
        let l = list(&["127.0.0.1:8080"]);
        let at = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert!(l.check("h", at("8.8.8.8:80")).is_ok());
        assert!(l.check("h", at("127.0.0.1:8080")).is_ok());
        for refused in ["127.0.0.2:8080", "169.254.169.254:80", "[64:ff9b::a00:1]:80", "198.18.0.1:80"] {
            assert!(matches!(l.check("h", at(refused)), Err(SourceError::PrivateHost { .. })), "{refused}");
        }
    }
}
