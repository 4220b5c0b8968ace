//! Authorities as clients dial them: `web.shop.svc.cluster.local:80`, `web.shop.svc:80`, `web.shop:80`.

use std::fmt;
use std::str::FromStr;

/// A Service port in a namespace: the key every routing snapshot is computed for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Authority {
    pub namespace: String,
    pub service: String,
    pub port: u16,
}

/// Why a string is not an authority shifter can route.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthorityError {
    #[error("authority {0:?} names no namespace; use name.namespace[.svc[.cluster.local]][:port]")]
    NoNamespace(String),
    #[error("authority {0:?} has an invalid port; use a number from 1 to 65535")]
    BadPort(String),
    #[error("authority {0:?} is not a Service name; use name.namespace[.svc[.cluster.local]][:port]")]
    NotAService(String),
}

/// The port clients mean when they give none.
pub const DEFAULT_PORT: u16 = 80;

impl FromStr for Authority {
    type Err = AuthorityError;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let (host, port) = match raw.rsplit_once(':') {
            Some((h, p)) => {
                (h, p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| AuthorityError::BadPort(raw.into()))?)
            }
            None => (raw, DEFAULT_PORT),
        };
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let labels: Vec<&str> = host.split('.').collect();
        let (service, namespace) = match labels.as_slice() {
            [name, ns] | [name, ns, "svc"] => (*name, *ns),
            [name, ns, "svc", rest @ ..] if !rest.is_empty() => (*name, *ns),
            [_] => return Err(AuthorityError::NoNamespace(raw.into())),
            _ => return Err(AuthorityError::NotAService(raw.into())),
        };
        let valid = |s: &str| {
            !s.is_empty()
                && s.len() <= 63
                && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        };
        if !valid(service) || !valid(namespace) {
            return Err(AuthorityError::NotAService(raw.into()));
        }
        Ok(Authority { namespace: namespace.into(), service: service.into(), port })
    }
}

impl fmt::Display for Authority {
    /// The canonical form, `name.namespace.svc.cluster.local:port`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.svc.cluster.local:{}", self.service, self.namespace, self.port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> Result<Authority, AuthorityError> {
        s.parse()
    }

    #[test]
    fn every_dialled_form_reaches_the_same_authority() {
        let want = Authority { namespace: "shop".into(), service: "web".into(), port: 8080 };
        for form in [
            "web.shop.svc.cluster.local:8080",
            "web.shop.svc:8080",
            "web.shop:8080",
            "WEB.shop.svc.cluster.local.:8080",
        ] {
            assert_eq!(a(form).unwrap(), want, "{form}");
        }
        assert_eq!(a("web.shop").unwrap().port, 80);
        assert_eq!(want.to_string(), "web.shop.svc.cluster.local:8080");
    }

    #[test]
    fn bad_authorities_say_what_to_write() {
        assert!(matches!(a("web:80"), Err(AuthorityError::NoNamespace(_))));
        assert!(matches!(a("web.shop:http"), Err(AuthorityError::BadPort(_))));
        assert!(matches!(a("web.shop:0"), Err(AuthorityError::BadPort(_))));
        assert!(matches!(a("a.b.c.d:80"), Err(AuthorityError::NotAService(_))));
        assert!(matches!(a("we_b.shop:80"), Err(AuthorityError::NotAService(_))));
    }
}
