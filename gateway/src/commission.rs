//! Commissioning: what answers on the site's network. Each Art-Net node of the plan is
//! polled (ArtPoll, unicast to its destination) and its ArtPollReplies listed; each Modbus
//! controller is probed (a connection and one poll of status, power, uptime and firmware
//! under its profile, with a deadline). sACN receivers and DMX-over-MQTT decoders do not
//! answer by design, and are listed as such. Used by `nightscape gateway discover` and by
//! the `discover` command from the broker.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use nightscape_core::codec::artnet::{self, ArtPoll, Packet};
use nightscape_core::codec::modbus::{Poll, Readings};
use nightscape_core::model::{Output, Profile, Site};
use nightscape_core::{ControllerId, ProfileId};
use tokio::net::UdpSocket;
use tokio_modbus::prelude::*;

use crate::guard::Destination;
use crate::modbus::{ReadOutcome, read};

/// What one controller answered.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// Art-Net nodes that replied (name and the port-addresses they output).
    ArtNet(Vec<Node>),
    /// The Modbus controller's readings, and how long the poll took.
    Modbus { readings: Readings, took: Duration },
    /// No answer, or a wrong one.
    Silent(String),
    /// The protocol has no answer to give (sACN receivers, DMX-over-MQTT decoders).
    NotAsked(&'static str),
}

/// An Art-Net node that replied to the poll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub from: SocketAddr,
    pub short_name: String,
    pub long_name: String,
    pub port_addresses: Vec<u16>,
}

/// One controller of the plan and what it answered.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub controller: ControllerId,
    pub to: Option<SocketAddr>,
    pub answer: Answer,
}

impl Finding {
    /// Whether the controller did not answer although it could have.
    pub fn silent(&self) -> bool {
        matches!(self.answer, Answer::Silent(_))
            || matches!(&self.answer, Answer::ArtNet(nodes) if nodes.is_empty())
    }
}

/// Polls and probes every controller `destinations` places; waits `wait` for answers.
pub async fn discover(
    site: &Site,
    profiles: &BTreeMap<ProfileId, Profile>,
    destinations: &BTreeMap<ControllerId, Destination>,
    loopback_only: bool,
    wait: Duration,
) -> Vec<Finding> {
    let mut findings = Vec::new();
    let mut polled = Vec::new();
    for c in site.controllers.iter() {
        let Some(destination) = destinations.get(&c.id) else {
            continue;
        };
        match (&c.output, destination) {
            (Output::ArtNet { .. }, Destination::Udp(to)) => polled.push((c.id.clone(), *to)),
            (Output::Modbus { unit, profile, .. }, Destination::Tcp(to)) => {
                let answer = match profiles.get(profile) {
                    Some(p) => probe(*to, *unit, p, wait).await,
                    None => Answer::Silent(format!("profile `{profile}` is not in the plan")),
                };
                findings.push(Finding {
                    controller: c.id.clone(),
                    to: Some(*to),
                    answer,
                });
            }
            (Output::Sacn { .. }, d) => findings.push(Finding {
                controller: c.id.clone(),
                to: match d {
                    Destination::Udp(to) => Some(*to),
                    _ => None,
                },
                answer: Answer::NotAsked("sACN receivers do not answer"),
            }),
            _ => findings.push(Finding {
                controller: c.id.clone(),
                to: None,
                answer: Answer::NotAsked("a DMX-over-MQTT decoder answers nothing on the broker"),
            }),
        }
    }
    if !polled.is_empty() {
        findings.extend(poll_art_net(&polled, loopback_only, wait).await);
    }
    findings.sort_by(|a, b| a.controller.cmp(&b.controller));
    findings
}

async fn probe(to: SocketAddr, unit: u8, profile: &Profile, wait: Duration) -> Answer {
    let start = Instant::now();
    let mut ctx = match tokio::time::timeout(wait, tcp::connect_slave(to, Slave(unit))).await {
        Ok(Ok(ctx)) => ctx,
        Ok(Err(e)) => return Answer::Silent(format!("connect: {e}")),
        Err(_) => return Answer::Silent(format!("connect: no answer in {wait:?}")),
    };
    let plan = Poll::new(profile, false);
    let mut answers = Vec::new();
    for r in &plan.reads {
        match read(&mut ctx, r, wait).await {
            ReadOutcome::Values(values) => answers.push(Some(values)),
            ReadOutcome::Exception(e) => {
                return Answer::Silent(format!("read of {:?}: {e}", r.registers()));
            }
            ReadOutcome::Lost(why) => return Answer::Silent(why),
        }
    }
    Answer::Modbus {
        readings: plan.readings(profile, &answers),
        took: start.elapsed(),
    }
}

/// Polls Art-Net nodes (ArtPoll unicast to each) and says which answered within `wait`.
pub async fn poll_art_net(
    nodes: &[(ControllerId, SocketAddr)],
    loopback_only: bool,
    wait: Duration,
) -> Vec<Finding> {
    let bind = if loopback_only {
        Ipv4Addr::LOCALHOST
    } else {
        Ipv4Addr::UNSPECIFIED
    };
    let silent = |why: String| -> Vec<Finding> {
        nodes
            .iter()
            .map(|(c, to)| Finding {
                controller: c.clone(),
                to: Some(*to),
                answer: Answer::Silent(why.clone()),
            })
            .collect()
    };
    // Art-Net nodes answer to port 6454 of the poller (some to the port it polled from):
    // poll from 6454 when it is free (not while a gateway on this box holds it).
    let socket = match UdpSocket::bind((bind, artnet::PORT)).await {
        Ok(s) => s,
        Err(_) => match UdpSocket::bind((bind, 0)).await {
            Ok(s) => s,
            Err(e) => return silent(format!("cannot open a socket to poll: {e}")),
        },
    };
    let poll = ArtPoll {
        flags: 0,
        diag_priority: 0,
    }
    .encode();
    for (_, to) in nodes {
        if let Err(e) = socket.send_to(&poll, to).await {
            tracing::warn!("ArtPoll to {to}: {e}");
        }
    }
    let mut replies: Vec<Node> = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    let mut buf = [0u8; 1500];
    while let Ok(Ok((len, from))) =
        tokio::time::timeout_at(deadline, socket.recv_from(&mut buf)).await
    {
        if let Ok(Packet::PollReply(r)) = artnet::decode(&buf[..len]) {
            let ports = (0..usize::from(r.num_ports.min(4)))
                .map(|k| {
                    u16::from(r.net_switch & 0x7f) << 8
                        | u16::from(r.sub_switch & 0x0f) << 4
                        | u16::from(r.sw_out[k] & 0x0f)
                })
                .collect();
            match replies.iter_mut().find(|n| n.from == from) {
                Some(n) => n.port_addresses.extend::<Vec<u16>>(ports),
                None => replies.push(Node {
                    from,
                    short_name: r.short_name.clone(),
                    long_name: r.long_name.clone(),
                    port_addresses: ports,
                }),
            }
        }
    }
    nodes
        .iter()
        .map(|(c, to)| Finding {
            controller: c.clone(),
            to: Some(*to),
            // A node answers from its own address, not necessarily the port it was sent to.
            answer: Answer::ArtNet(
                replies
                    .iter()
                    .filter(|n| n.from.ip() == to.ip())
                    .cloned()
                    .collect(),
            ),
        })
        .collect()
}

/// The findings as lines for people.
pub fn report(findings: &[Finding]) -> String {
    let mut out = String::new();
    for f in findings {
        let at = f.to.map_or_else(String::new, |a| format!(" at {a}"));
        let what = match &f.answer {
            Answer::ArtNet(nodes) if nodes.is_empty() => "no ArtPollReply".to_string(),
            Answer::ArtNet(nodes) => nodes
                .iter()
                .map(|n| {
                    format!(
                        "Art-Net node \"{}\" ({}), port-addresses {:?}",
                        n.short_name, n.long_name, n.port_addresses
                    )
                })
                .collect::<Vec<_>>()
                .join("; "),
            Answer::Modbus { readings, took } => {
                let mut s = format!("Modbus answered in {} ms", took.as_millis());
                if let Some(status) = &readings.status {
                    let faults: Vec<&str> = status.faults.iter().map(|b| b.name()).collect();
                    let _ = write!(
                        s,
                        ", status {}",
                        if faults.is_empty() {
                            "healthy".to_string()
                        } else {
                            faults.join(", ")
                        }
                    );
                }
                if let Some((major, minor)) = readings.firmware {
                    let _ = write!(s, ", firmware {major}.{minor}");
                }
                if let Some(up) = readings.uptime {
                    let _ = write!(s, ", up {} s", up.as_secs());
                }
                if let Some(w) = readings.power_w {
                    let _ = write!(s, ", {w:.0} W");
                }
                s
            }
            Answer::Silent(why) if why.contains("exception") => {
                format!("ANSWERED WITH AN ERROR: {why}")
            }
            Answer::Silent(why) => format!("NO ANSWER: {why}"),
            Answer::NotAsked(why) => format!("not asked ({why})"),
        };
        let _ = writeln!(out, "{}{at}: {what}", f.controller);
    }
    out
}
