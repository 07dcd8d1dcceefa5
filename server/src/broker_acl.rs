//! Mosquitto's access control for a city, made from the show library: one broker user for the
//! server, one per gateway and one per DMX-over-MQTT controller, each allowed only its own
//! topics — a gateway reads its own plan, overrides and commands and writes its own acks,
//! state, telemetry and events and its controllers' DMX; only the server writes plans,
//! overrides and commands. Also the password file lines in Mosquitto's own `$7$` form
//! (PBKDF2-HMAC-SHA512), so no clear password reaches the broker. Pure: the command line
//! writes the files and draws the random passwords and salts.

use std::fmt::Write as _;

use nightscape_core::ShowLibrary;
use nightscape_core::model::Output;
use nightscape_core::wire::{Topic, topic};

use sha2::{Digest, Sha512};

/// The broker user the server connects as.
pub const SERVER_USER: &str = "nightscape-server";

/// The broker user of a DMX-over-MQTT controller.
pub fn dmx_user(controller: &nightscape_core::ControllerId) -> String {
    format!("dmx-{controller}")
}

/// What a user may do with a topic filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

impl Access {
    fn as_str(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::Write => "write",
        }
    }
}

/// A broker user and its topics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    pub user: String,
    /// What it is, for the comment above its rules.
    pub role: String,
    pub rules: Vec<(Access, String)>,
}

/// Every client of the city's broker under `prefix` (empty in production).
pub fn clients(library: &ShowLibrary, prefix: &str) -> Vec<Client> {
    let mut out = vec![Client {
        user: SERVER_USER.into(),
        role: "the server (every replica)".into(),
        rules: [
            (Topic::Plan, Access::Write),
            (Topic::Overrides, Access::Write),
            (Topic::Cmd, Access::Write),
            (Topic::Ack, Access::Read),
            (Topic::State, Access::Read),
            (Topic::Telemetry, Access::Read),
            (Topic::Event, Access::Read),
        ]
        .into_iter()
        .map(|(leaf, access)| (access, format!("{prefix}nightscape/v1/gw/+/{leaf}")))
        .collect(),
    }];
    for site in library.sites.values() {
        for gw in &site.gateways {
            let mut rules = Vec::new();
            for (leaf, access) in [
                (Topic::Plan, Access::Read),
                (Topic::Overrides, Access::Read),
                (Topic::Cmd, Access::Read),
                (Topic::Ack, Access::Write),
                (Topic::State, Access::Write),
                (Topic::Telemetry, Access::Write),
                (Topic::Event, Access::Write),
            ] {
                rules.push((access, topic(prefix, &gw.id, leaf)));
            }
            for c in site.controllers.iter().filter(|c| c.gateway == gw.id) {
                if matches!(c.output, Output::DmxMqtt { .. }) {
                    rules.push((
                        Access::Write,
                        format!("{prefix}nightscape/v1/dmx/{}/+", c.id),
                    ));
                }
            }
            out.push(Client {
                user: gw.id.to_string(),
                role: format!("gateway of {}", site.id),
                rules,
            });
        }
        for c in &site.controllers {
            if matches!(c.output, Output::DmxMqtt { .. }) {
                out.push(Client {
                    user: dmx_user(&c.id),
                    role: format!("DMX-over-MQTT controller of {}", site.id),
                    rules: vec![(
                        Access::Read,
                        format!("{prefix}nightscape/v1/dmx/{}/+", c.id),
                    )],
                });
            }
        }
    }
    out
}

/// The `acl_file` for Mosquitto: each user's topics, nothing else for anyone.
pub fn acl_text(clients: &[Client]) -> String {
    let mut text = String::from(
        "# Mosquitto ACL for Nightscape, made by `nightscape server mqtt-acl` from the show\n\
         # library; make it again when gateways or controllers change. A user may use only the\n\
         # topics listed under it; anonymous clients are refused (allow_anonymous false).\n",
    );
    for c in clients {
        let _ = write!(text, "\n# {}\nuser {}\n", c.role, c.user);
        for (access, filter) in &c.rules {
            let _ = writeln!(text, "topic {} {filter}", access.as_str());
        }
    }
    text
}

/// Mosquitto's default for `$7$` hashes.
pub const ITERATIONS: u32 = 101;

/// One line of Mosquitto's `password_file`: `user:$7$iterations$salt$hash`, the hash being
/// PBKDF2-HMAC-SHA512 of the password with the 12-byte salt, both in standard base64.
pub fn password_line(user: &str, password: &str, salt: &[u8; 12]) -> String {
    let hash = pbkdf2_sha512(password.as_bytes(), salt, ITERATIONS);
    format!("{user}:$7${ITERATIONS}${}${}", base64(salt), base64(&hash))
}

/// Whether `line` (from a password file) holds `password` for its user.
pub fn password_matches(line: &str, password: &str) -> bool {
    let Some((_, hash)) = line.trim().split_once(':') else {
        return false;
    };
    let parts: Vec<&str> = hash.split('$').collect();
    let ["", "7", iterations, salt, expected] = parts.as_slice() else {
        return false;
    };
    let (Ok(iterations), Some(salt), Some(expected)) = (
        iterations.parse::<u32>(),
        unbase64(salt),
        unbase64(expected),
    ) else {
        return false;
    };
    iterations > 0 && pbkdf2_sha512(password.as_bytes(), &salt, iterations)[..] == expected[..]
}

fn hmac_sha512(key: &[u8], message: &[&[u8]]) -> [u8; 64] {
    const BLOCK: usize = 128;
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..64].copy_from_slice(&Sha512::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha512::new();
    inner.update(k.map(|b| b ^ 0x36));
    for part in message {
        inner.update(part);
    }
    let mut outer = Sha512::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    let mut out = [0u8; 64];
    out.copy_from_slice(&outer.finalize());
    out
}

/// PBKDF2 (RFC 8018) with HMAC-SHA512, one 64-byte block: all Mosquitto keeps.
fn pbkdf2_sha512(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 64] {
    let mut u = hmac_sha512(password, &[salt, &1u32.to_be_bytes()]);
    let mut t = u;
    for _ in 1..iterations {
        u = hmac_sha512(password, &[&u]);
        for (t, u) in t.iter_mut().zip(&u) {
            *t ^= u;
        }
    }
    t
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (k, b)| n | u32::from(*b) << (16 - 8 * k));
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * k) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn unbase64(text: &str) -> Option<Vec<u8>> {
    let mut bits = 0u32;
    let mut count = 0;
    let mut out = Vec::new();
    for c in text.trim_end_matches('=').bytes() {
        let v = ALPHABET.iter().position(|a| *a == c)? as u32;
        bits = bits << 6 | v;
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_gateway_has_only_its_own_topics_and_only_the_server_writes_plans() {
        let checked = nightscape_core::show::check(
            &crate::files::read_dir(std::path::Path::new(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../scenes"
            )))
            .unwrap_or_default(),
        );
        let clients = clients(&checked.library, "");
        let gateways: usize = checked
            .library
            .sites
            .values()
            .map(|s| s.gateways.len())
            .sum();
        assert_eq!(clients[0].user, SERVER_USER);
        assert!(
            clients.len() > gateways,
            "the server, the gateways, DMX controllers"
        );
        for c in &clients[1..] {
            for (access, filter) in &c.rules {
                assert!(
                    !filter.contains("/+/plan") && !filter.contains('#'),
                    "{c:?}"
                );
                if filter.ends_with("/plan")
                    || filter.ends_with("/overrides")
                    || filter.ends_with("/cmd")
                {
                    assert_eq!(*access, Access::Read, "{c:?}");
                }
                if filter.contains("/gw/") {
                    assert!(filter.contains(&format!("/gw/{}/", c.user)), "{c:?}");
                }
            }
        }
        let text = acl_text(&clients);
        assert!(
            text.contains("user nightscape-server\ntopic write nightscape/v1/gw/+/plan\n"),
            "{text}"
        );
        assert!(
            text.contains("topic write nightscape/v1/dmx/"),
            "a gateway writes its DMX-over-MQTT controllers' topics"
        );
    }

    #[test]
    fn base64_round_trips_every_length() {
        assert_eq!(base64(b"Man"), "TWFu");
        assert_eq!(base64(b"Ma"), "TWE=");
        assert_eq!(base64(b"M"), "TQ==");
        for n in 0..40u8 {
            let bytes: Vec<u8> = (0..n).map(|k| k.wrapping_mul(37)).collect();
            assert_eq!(unbase64(&base64(&bytes)).as_deref(), Some(&bytes[..]));
        }
    }

    #[test]
    fn pbkdf2_sha512_matches_the_rfc_6070_style_vector() {
        // PBKDF2-HMAC-SHA512("password", "salt", 1) — the widely published test vector.
        let got = pbkdf2_sha512(b"password", b"salt", 1);
        assert_eq!(
            nightscape_core::plan::hex(&got[..16]),
            "867f70cf1ade02cff3752599a3a53dc4"
        );
        let got = pbkdf2_sha512(b"password", b"salt", 2);
        assert_eq!(
            nightscape_core::plan::hex(&got[..16]),
            "e1d9c16aa681708a45f5c7c4e215ceb6"
        );
    }

    #[test]
    fn a_password_line_checks_its_own_password_only() {
        let line = password_line("cityhall-gw", "s3cret-s3cret", &[7; 12]);
        assert!(
            line.starts_with("cityhall-gw:$7$101$BwcHBwcHBwcHBwcH$"),
            "{line}"
        );
        assert!(password_matches(&line, "s3cret-s3cret"));
        assert!(!password_matches(&line, "s3cret-s3creT"));
        assert!(!password_matches("junk", "x"));
    }
}
