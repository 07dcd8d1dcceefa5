//! The server's HTTP edge: what every request passes before the route table sees it, and
//! what every answer carries after.
//!
//! - The `Host` a browser names must be one of this server's names (loopback, the listen
//!   address, `--allowed-host`): a page on another site whose name an attacker points at
//!   this address (DNS rebinding) is refused before it can read anything.
//! - A path whose `%`-escapes do not decode to UTF-8 is refused with the API's JSON error,
//!   as every other bad request is.
//! - The client's address is taken from the connection, and from `X-Forwarded-For` only
//!   when the connection comes from a proxy named with `--trusted-proxy`.
//! - Every answer carries a Content-Security-Policy without `unsafe-inline` (the pages load
//!   their script and style as files), `nosniff`, a referrer policy, and `no-store` unless
//!   its handler said how it may be kept.
//!
//! `same_origin` is the check a login makes of where its form was.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use nightscape_core::endpoints::{host_allowed, normal_host, split_authority};

use crate::AppState;
use crate::api::ApiError;

/// Where the server may be reached from: the names it answers to and the proxies whose
/// `X-Forwarded-For` it believes.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Host names and addresses the server answers to besides loopback, lowercase, without
    /// brackets or port.
    allowed_hosts: Vec<String>,
    trusted_proxies: Vec<IpAddr>,
}

impl Policy {
    /// `allowed_hosts`: names (or addresses) a browser may use to reach the server, at any
    /// port; the address it listens on is one when it is a particular address.
    /// `trusted_proxies`: the addresses of reverse proxies in front of it.
    pub fn new(allowed_hosts: &[String], trusted_proxies: &[IpAddr], listen: SocketAddr) -> Self {
        let mut hosts: Vec<String> = allowed_hosts.iter().map(|h| normal_host(h)).collect();
        if !listen.ip().is_unspecified() {
            hosts.push(listen.ip().to_canonical().to_string());
        }
        hosts.sort();
        hosts.dedup();
        Policy {
            allowed_hosts: hosts,
            trusted_proxies: trusted_proxies.iter().map(IpAddr::to_canonical).collect(),
        }
    }

    /// Whether a `Host` value (`name`, `name:port`, `[v6]:port`) names this server.
    pub fn allows_host(&self, value: &str) -> bool {
        host_allowed(value, &self.allowed_hosts)
    }

    /// The client's address: the connection's peer, or, when the peer is a trusted proxy,
    /// the nearest address in `X-Forwarded-For` that is not one. Each proxy appends the
    /// address it was reached from, so only the entries right of the first untrusted one
    /// were written by proxies; anything further left is whatever the client sent.
    pub fn client(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> Option<IpAddr> {
        let peer = peer?.to_canonical();
        if !self.trusted_proxies.contains(&peer) {
            return Some(peer);
        }
        let hops: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .collect();
        let mut nearest = peer;
        for hop in hops.iter().rev() {
            let Some(ip) = parse_hop(hop.trim()) else {
                // A proxy wrote something that is not an address: the last address known
                // to be true is the one that stands for the client.
                return Some(nearest);
            };
            if !self.trusted_proxies.contains(&ip) {
                return Some(ip);
            }
            nearest = ip;
        }
        Some(nearest)
    }
}

/// A forwarded hop: an address, perhaps with a port (`1.2.3.4:5678`, `[::1]:80`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>()
        .or_else(|_| hop.parse::<SocketAddr>().map(|s| s.ip()))
        .ok()
        .map(|ip| ip.to_canonical())
}

/// The client's address as the edge found it (see [`Policy::client`]); `None` when the
/// request came without a connection (a test calling the router directly).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub Option<IpAddr>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<ClientAddr>()
            .copied()
            .unwrap_or(ClientAddr(None)))
    }
}

impl ClientAddr {
    /// The name the login limit counts this client under: its IPv4 address, or the /64 its
    /// IPv6 address is in (one subscriber's network; counting single IPv6 addresses would
    /// give anyone with a /64 a fresh count for every guess).
    pub fn bucket(&self) -> String {
        match self.0 {
            Some(IpAddr::V4(ip)) => ip.to_string(),
            Some(IpAddr::V6(ip)) => {
                let net = u128::from(ip) & !(u128::MAX >> 64);
                format!("{}/64", std::net::Ipv6Addr::from(net))
            }
            None => "unknown".to_owned(),
        }
    }
}

/// The policy every answer is served under. The pages load `/static/app.css` and
/// `/static/app.js` and carry no inline script, style or handler, so none is allowed; the
/// pictures the pages swap in are `blob:` URLs; nothing may frame the dashboard.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// The edge around the whole router: the Host check, the path check, the client's
/// address, and the headers of every answer, refusals included.
pub async fn edge(
    State(state): State<Arc<AppState>>,
    mut request: Request,
    next: Next,
) -> Response {
    let mut response = match check(&state.edge, &request) {
        Err(e) => e.into_response(),
        Ok(()) => {
            let peer = request
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(a)| a.ip());
            let client = ClientAddr(state.edge.client(peer, request.headers()));
            request.extensions_mut().insert(client);
            next.run(request).await
        }
    };
    let headers = response.headers_mut();
    for (name, value) in [
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        // Older browsers that do not read `frame-ancestors`.
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        // Not `no-referrer`: under it a browser sends `Origin: null` with the dashboard's own
        // form posts, which the login's origin check would then refuse.
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        ),
    ] {
        headers.insert(name, value);
    }
    // Answers hold a session's CSRF token, users, logs and exports: nothing is kept by a
    // browser or a proxy unless its handler says it may be (the versioned static files, a
    // scene's animation at a versioned address).
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

fn check(policy: &Policy, request: &Request) -> Result<(), ApiError> {
    // A browser always names the host it thinks it is talking to, in `Host` (HTTP/1.1) or
    // in the address itself; a request without either is not from a browser, so it cannot
    // be a rebound page and is let through.
    let named = request
        .uri()
        .authority()
        .map(|a| a.as_str().to_owned())
        .into_iter()
        .chain(
            request
                .headers()
                .get_all(header::HOST)
                .iter()
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
        );
    for host in named {
        if !policy.allows_host(&host) {
            return Err(ApiError::new(
                StatusCode::MISDIRECTED_REQUEST,
                "unknown-host",
                format!(
                    "this server does not answer to the name `{}`; use its own address, or start it with --allowed-host NAME",
                    host.chars().take(100).collect::<String>()
                ),
            ));
        }
    }
    let path = request.uri().path();
    if let Err(at) = decoded_utf8(path) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad-request",
            format!(
                "the path is not UTF-8 once its %-escapes are decoded (byte {at}); write names in UTF-8 and escape each byte"
            ),
        ));
    }
    Ok(())
}

/// Checks that a path's `%`-escapes decode to UTF-8; the position of the first bad byte in
/// the decoded path otherwise. A `%` not followed by two hex digits stays as it is, as the
/// router reads it.
fn decoded_utf8(path: &str) -> Result<(), usize> {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut k = 0;
    while k < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        if bytes[k] == b'%'
            && let (Some(hi), Some(lo)) = (
                bytes.get(k + 1).copied().and_then(hex),
                bytes.get(k + 2).copied().and_then(hex),
            )
        {
            // Two hex digits make at most 255.
            out.push(u8::try_from(hi * 16 + lo).unwrap_or(u8::MAX));
            k += 3;
        } else {
            out.push(bytes[k]);
            k += 1;
        }
    }
    std::str::from_utf8(&out)
        .map(|_| ())
        .map_err(|e| e.valid_up_to())
}

/// Whether a login came from the dashboard's own pages. A page on another site can post a
/// login form here and so log the visitor in as the attacker (to see what they enter next);
/// its browser says where the form was in `Origin`, or at least in `Sec-Fetch-Site`. The
/// origin must name the host the request was sent to. A client that sends neither (a
/// script, `curl`, an old browser) is not a page that another site controls.
pub fn same_origin(headers: &HeaderMap) -> Result<(), ApiError> {
    let refuse = |from: &str| {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "cross-origin-login",
            format!(
                "a login is taken only from this dashboard's own pages; this one came from {}",
                from.chars().take(200).collect::<String>()
            ),
        )
    };
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = String::from_utf8_lossy(origin.as_bytes());
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        return if origin_names(&origin, host) {
            Ok(())
        } else {
            Err(refuse(&format!("`{origin}`")))
        };
    }
    match headers
        .get("sec-fetch-site")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).to_ascii_lowercase())
        .as_deref()
    {
        None | Some("same-origin" | "none") => Ok(()),
        Some(other) => Err(refuse(&format!("a page that is {other} (Sec-Fetch-Site)"))),
    }
}

/// Whether `origin` (`scheme://host[:port]`) is the one of a page served under `host`
/// (`host[:port]`). A Host without a port is at the origin scheme's default port.
fn origin_names(origin: &str, host: &str) -> bool {
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false;
    };
    let default = match scheme.to_ascii_lowercase().as_str() {
        "http" => 80,
        "https" => 443,
        _ => return false,
    };
    let (Some((o_host, o_port)), Some((h_host, h_port))) =
        (split_authority(authority), split_authority(host))
    else {
        return false;
    };
    normal_host(o_host) == normal_host(h_host)
        && o_port.unwrap_or(default) == h_port.unwrap_or(default)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy::new(
            &["Lights.Nonsan.go.kr.".into(), "[2001:db8::7]".into()],
            &[
                "10.0.0.2".parse().unwrap(),
                "::ffff:10.0.0.3".parse().unwrap(),
            ],
            "192.0.2.10:8080".parse().unwrap(),
        )
    }

    #[test]
    fn hosts_are_loopback_the_listen_address_and_the_names_given_at_any_port() {
        let p = policy();
        for ok in [
            "localhost",
            "LOCALHOST:8080",
            "127.0.0.1",
            "127.0.0.1:1",
            "127.77.0.5:80",
            "[::1]",
            "[::1]:8080",
            "lights.nonsan.go.kr",
            "lights.nonsan.go.kr.:443",
            "[2001:db8::7]:8080",
            "192.0.2.10:8080",
        ] {
            assert!(p.allows_host(ok), "{ok}");
        }
        for refused in [
            "",
            "evil.example",
            "evil.example:8080",
            "localhost.evil.example",
            "lights.nonsan.go.kr.evil.example",
            "192.0.2.11",
            "::1",
            "[::1",
            "localhost:http",
            "127.0.0.1:99999",
        ] {
            assert!(!p.allows_host(refused), "{refused}");
        }
        // Listening on every address names none of them.
        let any = Policy::new(&[], &[], "0.0.0.0:8080".parse().unwrap());
        assert!(!any.allows_host("0.0.0.0:8080"));
        assert!(any.allows_host("127.0.0.1:8080"));
    }

    #[test]
    fn forwarded_addresses_count_only_from_trusted_proxies() {
        let p = policy();
        let xff = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert("x-forwarded-for", HeaderValue::from_str(v).unwrap());
            h
        };
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        // From a client: its own address, whatever it says.
        assert_eq!(
            p.client(ip("198.51.100.9"), &xff("1.2.3.4")),
            ip("198.51.100.9")
        );
        // From a proxy: the address it was reached from.
        assert_eq!(p.client(ip("10.0.0.2"), &xff("1.2.3.4")), ip("1.2.3.4"));
        // A client's own `X-Forwarded-For` is left of what the proxy appended.
        assert_eq!(
            p.client(ip("10.0.0.2"), &xff("6.6.6.6, 1.2.3.4")),
            ip("1.2.3.4")
        );
        // Through two proxies.
        assert_eq!(
            p.client(ip("10.0.0.2"), &xff("1.2.3.4, 10.0.0.3")),
            ip("1.2.3.4")
        );
        assert_eq!(
            p.client(ip("::ffff:10.0.0.2"), &xff("[2001:db8::1]:5000")),
            ip("2001:db8::1")
        );
        // A proxy that says nothing, or nonsense: the last address known to be true.
        assert_eq!(p.client(ip("10.0.0.2"), &HeaderMap::new()), ip("10.0.0.2"));
        assert_eq!(
            p.client(ip("10.0.0.2"), &xff("1.2.3.4, junk, 10.0.0.3")),
            ip("10.0.0.3")
        );
        assert_eq!(p.client(None, &xff("1.2.3.4")), None);
    }

    #[test]
    fn clients_are_counted_by_ipv4_address_and_by_ipv6_network() {
        let bucket = |s: &str| ClientAddr(Some(s.parse().unwrap())).bucket();
        assert_eq!(bucket("198.51.100.9"), "198.51.100.9");
        assert_ne!(bucket("198.51.100.9"), bucket("198.51.100.10"));
        assert_eq!(bucket("2001:db8:1:2::7"), "2001:db8:1:2::/64");
        assert_eq!(bucket("2001:db8:1:2:ffff::1"), bucket("2001:db8:1:2::7"));
        assert_ne!(bucket("2001:db8:1:3::7"), bucket("2001:db8:1:2::7"));
        assert_eq!(ClientAddr(None).bucket(), "unknown");
    }

    #[test]
    fn only_escapes_that_decode_to_utf8_pass() {
        assert_eq!(decoded_utf8("/api/sites/nonsan-city-hall"), Ok(()));
        assert_eq!(decoded_utf8("/library/a/%ED%95%9C.toml"), Ok(()));
        assert_eq!(decoded_utf8("/a%2"), Ok(()));
        assert_eq!(decoded_utf8("/api/sites/%FF"), Err(11));
        assert_eq!(decoded_utf8("/%ED%95"), Err(1));
    }

    #[test]
    fn a_login_must_come_from_the_origin_it_was_sent_to() {
        let headers = |pairs: &[(&'static str, &str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(*k, HeaderValue::from_str(v).unwrap());
            }
            h
        };
        for ok in [
            headers(&[]),
            headers(&[
                ("host", "127.0.0.1:8080"),
                ("origin", "http://127.0.0.1:8080"),
            ]),
            headers(&[
                ("host", "lights.example"),
                ("origin", "https://Lights.example"),
            ]),
            headers(&[
                ("host", "lights.example:443"),
                ("origin", "https://lights.example"),
            ]),
            headers(&[("sec-fetch-site", "same-origin")]),
            headers(&[("sec-fetch-site", "none")]),
        ] {
            assert!(same_origin(&ok).is_ok(), "{ok:?}");
        }
        for refused in [
            headers(&[
                ("host", "127.0.0.1:8080"),
                ("origin", "http://evil.example"),
            ]),
            headers(&[
                ("host", "127.0.0.1:8080"),
                ("origin", "http://127.0.0.1:3000"),
            ]),
            headers(&[("host", "127.0.0.1:8080"), ("origin", "null")]),
            headers(&[
                ("host", "lights.example"),
                ("origin", "http://lights.example:8443"),
            ]),
            headers(&[("origin", "http://127.0.0.1:8080")]),
            headers(&[("sec-fetch-site", "cross-site")]),
            headers(&[("sec-fetch-site", "same-site")]),
        ] {
            let e = same_origin(&refused).expect_err(&format!("{refused:?}"));
            assert_eq!(e.status(), StatusCode::FORBIDDEN);
        }
    }
}
