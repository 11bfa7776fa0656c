//! Where connector calls may go: http or https adapters, never a link-local
//! or cloud metadata address (169.254.0.0/16 and fe80::/10, where cloud
//! instances serve their credentials, or fd00:ec2::254), loopback only when
//! allowed (`--allow-loopback-connectors`, for local set-ups), and no
//! redirects (a redirect could lead anywhere). Checked when a connector is
//! registered (literal addresses and the well-known metadata names) and on
//! every connection: the resolver drops what DNS answers outside the policy,
//! so a name that later resolves to a metadata address is refused too.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use url::{Host, Url};

/// Names that reach cloud metadata services.
const METADATA_NAMES: &[&str] = &["metadata.google.internal", "metadata.goog", "metadata", "instance-data"];

/// AWS's IPv6 instance metadata address.
const AWS_METADATA_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254);

/// What connector calls may reach.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EgressPolicy {
    /// Loopback adapters (a local set-up) are allowed.
    pub allow_loopback: bool,
}

impl EgressPolicy {
    /// Why `ip` may not be called, if it may not.
    pub fn refuse_ip(self, ip: IpAddr) -> Option<&'static str> {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match ip {
            IpAddr::V4(v4) if v4.is_link_local() => Some("is link-local, where cloud metadata services answer"),
            IpAddr::V6(v6) if v6 == AWS_METADATA_V6 => Some("is a cloud metadata address"),
            IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80 => Some("is link-local"),
            _ if ip.is_unspecified() || ip.is_multicast() => Some("is not a unicast address"),
            _ if ip.is_loopback() && !self.allow_loopback => {
                Some("is loopback, which connectors may call only with --allow-loopback-connectors")
            }
            _ => None,
        }
    }

    /// Why `url` may not be an adapter's endpoint, if it may not.
    pub fn refuse_url(self, url: &Url) -> Option<String> {
        let refused = match url.host() {
            None => Some("names no host"),
            Some(Host::Ipv4(v4)) => self.refuse_ip(IpAddr::V4(v4)),
            Some(Host::Ipv6(v6)) => self.refuse_ip(IpAddr::V6(v6)),
            Some(Host::Domain(name)) => {
                let name = name.trim_end_matches('.').to_ascii_lowercase();
                if METADATA_NAMES.contains(&name.as_str()) {
                    Some("names a cloud metadata service")
                } else if (name == "localhost" || name.ends_with(".localhost")) && !self.allow_loopback {
                    Some("is loopback, which connectors may call only with --allow-loopback-connectors")
                } else {
                    None
                }
            }
        };
        refused.map(|why| format!("{} {why}", url.host_str().unwrap_or_default()))
    }

    /// The HTTP client connector calls go through: no redirects, and only
    /// the resolved addresses the policy allows.
    pub fn client(self) -> reqwest::Client {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(FilteringResolver(self)))
            .build()
            .expect("an HTTP client with rustls")
    }
}

/// The system resolver, minus the addresses the policy refuses.
struct FilteringResolver(EgressPolicy);

impl reqwest::dns::Resolve for FilteringResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.0;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> =
                resolved.iter().copied().filter(|addr| policy.refuse_ip(addr.ip()).is_none()).collect();
            if allowed.is_empty() {
                let why =
                    resolved.first().and_then(|addr| policy.refuse_ip(addr.ip())).unwrap_or("resolves to nothing");
                return Err(format!("{host}: {why}").into());
            }
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(policy: EgressPolicy, url: &str) -> bool {
        policy.refuse_url(&Url::parse(url).unwrap()).is_some()
    }

    #[test]
    fn metadata_and_link_local_are_never_called() {
        let strict = EgressPolicy::default();
        let local = EgressPolicy { allow_loopback: true };
        for url in [
            "http://169.254.169.254/latest/meta-data/",
            "http://[fd00:ec2::254]/",
            "http://[fe80::1]:8080/",
            "http://[::ffff:169.254.169.254]/",
            "http://metadata.google.internal/",
            "http://METADATA.google.internal./",
            "http://0.0.0.0:8080/",
        ] {
            assert!(refused(strict, url) && refused(local, url), "{url}");
        }
        for url in ["http://127.0.0.1:9000/", "http://[::1]:9000/", "http://localhost:9000/"] {
            assert!(refused(strict, url), "{url}: loopback needs the flag");
            assert!(!refused(local, url), "{url}: allowed with the flag");
        }
        for url in ["https://intune-adapter.example.com/", "http://10.0.0.7:8080/", "http://[2001:db8::7]/"] {
            assert!(!refused(strict, url), "{url}");
        }
    }
}
