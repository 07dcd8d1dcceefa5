//! The command-line surface.

use std::fs;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use nightscape_core::schema;

use crate::{library, plan, profile, render, schedule};

#[derive(Debug, Parser)]
#[command(
    name = "nightscape",
    version,
    about = "Night-landscape lighting control"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// `nightscape server`: run it, or write the broker's access control.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ServerCommand {
    #[command(subcommand)]
    pub action: Option<ServerAction>,
    #[command(flatten)]
    pub options: crate::server::Options,
}

#[derive(Debug, Subcommand)]
pub enum ServerAction {
    /// Mosquitto's ACL and password file for the city: the server, every gateway and every
    /// DMX-over-MQTT controller of the library, each allowed only its own topics.
    MqttAcl(crate::mqtt_acl::Options),
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The whole system on loopback, secured like production: an MQTT broker with the city's
    /// users (a private Mosquitto when installed, enforcing each client's topics), and in one
    /// process the server on SQLite, every gateway of the library and the simulator with
    /// every controller.
    Up(crate::up::Options),
    /// The server alone (production): the API, the store, and publishing, against an MQTT
    /// broker. Replicas run it against one PostgreSQL. `server mqtt-acl` writes the broker's
    /// access control.
    // Boxed: the server's options (its repeatable --allowed-host and --trusted-proxy among
    // them) make it the largest command by far.
    Server(Box<ServerCommand>),
    /// Work with the show library (sites, fixtures, profiles, scenes).
    #[command(subcommand)]
    Scene(SceneCommand),
    /// Check Modbus controller profiles on their own (third-party profiles before they join
    /// a library).
    #[command(subcommand)]
    Profile(ProfileCommand),
    /// The site gateway: run it, or write and check its configuration.
    #[command(subcommand)]
    Gateway(GatewayCommand),
    /// Run simulated field controllers for the sites of a show library, on loopback.
    Sim {
        /// The show library.
        #[arg(long, default_value = "scenes")]
        library: PathBuf,
        /// Only this site (repeat for several; default: every site).
        #[arg(long = "site")]
        sites: Vec<String>,
        /// All controllers on 127.0.0.1 with free ports, instead of each on its own
        /// 127.77.x.y address with the protocol's standard port.
        #[arg(long)]
        ports: bool,
        /// Where to write the endpoint map gateways read.
        #[arg(long, default_value = "sim-endpoints.toml")]
        endpoints: PathBuf,
        /// Where the state API listens (loopback only).
        #[arg(long, default_value = "127.0.0.1:8090")]
        http: std::net::SocketAddr,
        /// The MQTT broker DMX-over-MQTT controllers subscribe on, host:port.
        #[arg(long)]
        broker: Option<String>,
        /// Prepended to every MQTT topic.
        #[arg(long, default_value = "")]
        topic_prefix: String,
        /// A fault scenario (TOML) to apply at start; more can be posted to /api/scenario.
        #[arg(long)]
        scenario: Option<PathBuf>,
        /// Also receive sACN multicast for controllers that listen to multicast in the field,
        /// joined on loopback: for a private network namespace (`unshare -n`) only.
        #[arg(long)]
        multicast: bool,
        /// Where the token for changes through the API (faults, scenarios) is kept, mode 600
        /// (default: `sim-token` beside the endpoint map); made at the first start.
        #[arg(long)]
        token_file: Option<PathBuf>,
        /// A host name the API also answers to besides localhost and 127.0.0.0/8 (repeat for
        /// several); other `Host` headers are refused, so a web page cannot reach it by DNS
        /// rebinding.
        #[arg(long = "allow-host")]
        allow_hosts: Vec<String>,
    },
    /// Look at schedules.
    #[command(subcommand)]
    Schedule(ScheduleCommand),
    /// Work with calendars.
    #[command(subcommand)]
    Calendar(CalendarCommand),
    /// Compile, sign and check plans.
    #[command(subcommand)]
    Plan(PlanCommand),
    /// Make an Ed25519 key pair for signing plans: BASE.key (secret) and BASE.pub.
    Keygen {
        /// Where to write, without extension.
        #[arg(long, default_value = "nightscape")]
        out: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum CalendarCommand {
    /// Add the holidays of the special-day service's answers (KASI `getRestDeInfo`, XML or
    /// JSON; `-` reads standard input) to a calendar file that does not list them yet.
    ImportKasi {
        /// The calendar file to add to (TOML), e.g. scenes/calendars/kr-holidays.toml.
        #[arg(long)]
        calendar: PathBuf,
        /// Response bodies as saved, one file per request.
        #[arg(required = true)]
        responses: Vec<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum PlanCommand {
    /// Compile and sign the plan for one gateway of a site.
    Compile {
        /// The site id.
        #[arg(long)]
        site: String,
        /// Needed when the site has more than one gateway.
        #[arg(long)]
        gateway: Option<String>,
        /// The secret key (from `nightscape keygen`).
        #[arg(long)]
        key: PathBuf,
        /// Where to write the signed plan.
        #[arg(long)]
        out: PathBuf,
        /// The plan version (default: the current time in milliseconds).
        #[arg(long)]
        version: Option<u64>,
        /// When gateways switch to it: 2026-12-24T18:00 (site time) or with an offset (default: now).
        #[arg(long)]
        effective_from: Option<String>,
        /// The show library.
        #[arg(long, default_value = "scenes")]
        library: PathBuf,
    },
    /// Sign an overrides document for one gateway (until the server publishes them): a
    /// scene, a blackout and/or a curfew exception from now for some hours.
    Overrides {
        #[arg(long)]
        gateway: String,
        /// The secret key (from `nightscape keygen`).
        #[arg(long)]
        key: PathBuf,
        /// Where to write it (a gateway's data directory takes it as `overrides.json`).
        #[arg(long)]
        out: PathBuf,
        /// Play this scene.
        #[arg(long)]
        scene: Option<String>,
        /// At this brightness, in percent (default 100).
        #[arg(long)]
        brightness: Option<f64>,
        /// Dark, latched until a document without it.
        #[arg(long)]
        blackout: bool,
        /// Light through the curfew (an admin's exception).
        #[arg(long)]
        curfew_exception: bool,
        /// How long the scene and the exception last.
        #[arg(long, default_value_t = 1.0)]
        hours: f64,
        /// The document version (default: the current time in milliseconds).
        #[arg(long)]
        version: Option<u64>,
        /// Who sets it and why, for the log.
        #[arg(long, default_value = "engineer")]
        by: String,
        #[arg(long, default_value = "set by nightscape plan overrides")]
        reason: String,
    },
    /// Check a plan as a gateway would: signature, addressee, version and contents.
    Verify {
        /// The trusted public key.
        #[arg(long)]
        pubkey: PathBuf,
        /// The gateway that checks it (default: the one the plan names).
        #[arg(long)]
        gateway: Option<String>,
        /// The version the gateway plays now; the plan must be newer.
        #[arg(long)]
        current: Option<u64>,
        /// The signed plan file.
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// Sun times and every transition with its cause, day by day, in the site's time zone.
    Preview {
        /// The site id.
        #[arg(long)]
        site: String,
        /// The first day, e.g. 2026-12-24.
        #[arg(long)]
        from: String,
        /// How many days.
        #[arg(long, default_value_t = 7)]
        days: u32,
        /// `text` or `json`.
        #[arg(long, default_value = "text")]
        format: String,
        /// The show library.
        #[arg(long, default_value = "scenes")]
        library: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum GatewayCommand {
    /// Print a configuration with every key and what it means.
    PrintDefaultConfig,
    /// Check a configuration file and print every problem with its line and column.
    CheckConfig {
        /// The configuration file.
        file: PathBuf,
    },
    /// Run the gateway: play the plan on disk and what the broker sends, drive the
    /// controllers, and go to the safe state on ctrl-c or SIGTERM.
    Run {
        /// The configuration file (`nightscape gateway print-default-config`).
        #[arg(long)]
        config: PathBuf,
        /// Play this signed plan with no broker at all (engineers on the simulator).
        #[arg(long)]
        plan: Option<PathBuf>,
    },
    /// Poll the Art-Net nodes and probe the Modbus controllers of the gateway's plan (the one
    /// in its data directory, or --plan) and say what answered; exit 1 if any did not.
    Discover {
        /// The gateway's configuration file.
        #[arg(long)]
        config: PathBuf,
        /// A signed plan to take the controllers from (default: the one in the data directory).
        #[arg(long)]
        plan: Option<PathBuf>,
    },
    /// Make a fixture or all of a controller's fixtures blink, through the running gateway
    /// (a command on the broker; waits for its ack).
    Identify {
        /// The gateway's configuration file (its broker and id).
        #[arg(long)]
        config: PathBuf,
        /// The fixture that blinks.
        #[arg(long)]
        fixture: Option<String>,
        /// Or every fixture of this controller.
        #[arg(long)]
        controller: Option<String>,
        /// How long it blinks.
        #[arg(long, default_value_t = 30)]
        seconds: u32,
    },
    /// Hold one channel of a controller at a level for a while, through the running gateway.
    ChannelTest {
        /// The gateway's configuration file (its broker and id).
        #[arg(long)]
        config: PathBuf,
        /// The controller whose channel is held.
        #[arg(long)]
        controller: String,
        /// The universe, for a controller with several (sACN universe number, or Art-Net
        /// port-address as a number: net × 256 + sub-net × 16 + universe).
        #[arg(long)]
        universe: Option<u16>,
        /// 1-based slot (or Modbus channel).
        #[arg(long)]
        channel: u16,
        /// 0–255.
        #[arg(long)]
        level: u8,
        /// How long it is held.
        #[arg(long, default_value_t = 30)]
        seconds: u32,
    },
}

#[derive(Debug, Subcommand)]
pub enum ProfileCommand {
    /// Check profile files and say what a gateway will write and read on such a controller.
    Check {
        /// Profile files; each one's id is its file name without `.toml`.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum SceneCommand {
    /// Check a show library and print every problem as `file:line:col: error[code]: message`.
    Check {
        /// The library directory.
        #[arg(default_value = "scenes")]
        dir: PathBuf,
        /// The date calendars must reach 60 days beyond (default: today, UTC).
        #[arg(long)]
        today: Option<String>,
    },
    /// Draw a scene as its fixtures would show it: a PNG at one instant, or a GIF over time.
    Render {
        /// The scene id.
        #[arg(long)]
        scene: String,
        /// When: `2026-12-24T19:30` (site time) or `2026-12-24T19:30:00+09:00`.
        #[arg(long)]
        at: String,
        /// Animate for this long (`10s`, `2m`); needs a .gif output.
        #[arg(long)]
        duration: Option<String>,
        /// Frames per second of an animation.
        #[arg(long, default_value_t = 10)]
        fps: u32,
        /// Picture width in pixels.
        #[arg(long, default_value_t = 1280)]
        width: u32,
        /// Output file, .png or .gif.
        #[arg(long)]
        out: PathBuf,
        /// The show library.
        #[arg(long, default_value = "scenes")]
        library: PathBuf,
    },
    /// Write the JSON Schemas of the show files (for editor completion).
    Schema {
        /// Where to write them.
        #[arg(long, default_value = "scenes/schema")]
        out: PathBuf,
    },
}

pub fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Up(options) => {
            crate::up::run(options)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Server(server) => match *server {
            ServerCommand {
                action: Some(ServerAction::MqttAcl(options)),
                ..
            } => {
                println!("{}", crate::mqtt_acl::run(&options)?);
                Ok(ExitCode::SUCCESS)
            }
            ServerCommand {
                action: None,
                options,
            } => {
                crate::server::run(options)?;
                Ok(ExitCode::SUCCESS)
            }
        },
        Command::Keygen { out } => {
            eprintln!("{}", plan::keygen(&out)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Plan(PlanCommand::Compile {
            site,
            gateway,
            key,
            out,
            version,
            effective_from,
            library,
        }) => {
            let request = plan::Compile {
                library: &library,
                site: &site,
                gateway: gateway.as_deref(),
                key: &key,
                out: &out,
                version,
                effective_from: effective_from.as_deref(),
            };
            eprintln!("{}", plan::compile(&request)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Plan(PlanCommand::Verify {
            pubkey,
            gateway,
            current,
            file,
        }) => match plan::verify(&pubkey, &file, gateway.as_deref(), current)? {
            Ok(text) => {
                writeln!(std::io::stdout().lock(), "{text}")?;
                Ok(ExitCode::SUCCESS)
            }
            Err(text) => {
                writeln!(std::io::stdout().lock(), "{text}")?;
                Ok(ExitCode::FAILURE)
            }
        },
        Command::Scene(SceneCommand::Check { dir, today }) => scene_check(dir, today.as_deref()),
        Command::Sim {
            library,
            sites,
            ports,
            endpoints,
            http,
            broker,
            topic_prefix,
            scenario,
            multicast,
            token_file,
            allow_hosts,
        } => {
            crate::sim::run(crate::sim::Options {
                library,
                sites,
                ports,
                endpoints,
                http,
                broker,
                topic_prefix,
                multicast,
                scenario,
                token_file,
                allow_hosts,
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Plan(PlanCommand::Overrides {
            gateway,
            key,
            out,
            scene,
            brightness,
            blackout,
            curfew_exception,
            hours,
            version,
            by,
            reason,
        }) => {
            let text = plan::overrides(&plan::Overrides {
                gateway: &gateway,
                key: &key,
                out: &out,
                scene: scene.as_deref(),
                brightness,
                blackout,
                curfew_exception,
                hours,
                version,
                by: &by,
                reason: &reason,
            })?;
            eprintln!("{text}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Gateway(GatewayCommand::PrintDefaultConfig) => {
            write!(
                std::io::stdout().lock(),
                "{}",
                nightscape_gateway::config::DEFAULT
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Gateway(GatewayCommand::CheckConfig { file }) => {
            // The file itself (every problem with its place), then what it points at: the
            // keys, the endpoint map, the password and CA files.
            let checked = crate::gateway::read_config(&file).and_then(|c| {
                let summary = format!(
                    "{}: gateway `{}`, {} Hz, safe state {:?}, broker {}:{}{}{}",
                    file.display(),
                    c.gateway,
                    c.frame_rate_hz,
                    c.safe_state,
                    c.mqtt.host,
                    c.mqtt.port,
                    if c.mqtt.ca_file.is_some() {
                        " (TLS)"
                    } else {
                        ""
                    },
                    if c.loopback_only {
                        ", loopback only"
                    } else {
                        ""
                    }
                );
                crate::gateway::setup(c, None).map(|_| summary)
            });
            match checked {
                Ok(summary) => {
                    writeln!(std::io::stdout().lock(), "{summary}")?;
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    writeln!(std::io::stdout().lock(), "{e:#}")?;
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Command::Gateway(GatewayCommand::Run { config, plan }) => {
            crate::gateway::run(&config, plan)
        }
        Command::Gateway(GatewayCommand::Discover { config, plan }) => {
            crate::gateway::discover(&config, plan.as_deref())
        }
        Command::Gateway(GatewayCommand::Identify {
            config,
            fixture,
            controller,
            seconds,
        }) => {
            if fixture.is_none() && controller.is_none() {
                anyhow::bail!("say what to identify: --fixture ID or --controller ID");
            }
            crate::gateway::command(
                &config,
                nightscape_core::wire::Action::Identify {
                    fixture: fixture.map(|f| f.parse()).transpose()?,
                    controller: controller.map(|c| c.parse()).transpose()?,
                    seconds,
                },
            )
        }
        Command::Gateway(GatewayCommand::ChannelTest {
            config,
            controller,
            universe,
            channel,
            level,
            seconds,
        }) => crate::gateway::command(
            &config,
            nightscape_core::wire::Action::ChannelTest {
                controller: controller.parse()?,
                universe,
                channel,
                level,
                seconds,
            },
        ),
        Command::Profile(ProfileCommand::Check { files }) => {
            let (report, ok) = profile::check(&files)?;
            write!(std::io::stdout().lock(), "{report}")?;
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Calendar(CalendarCommand::ImportKasi {
            calendar,
            responses,
        }) => crate::calendar::import_kasi(&calendar, &responses),
        Command::Schedule(ScheduleCommand::Preview {
            site,
            from,
            days,
            format,
            library,
        }) => {
            let format = match format.as_str() {
                "text" => schedule::Format::Text,
                "json" => schedule::Format::Json,
                other => anyhow::bail!("--format {other}: use text or json"),
            };
            let checked = checked_library(&library)?;
            let text = schedule::preview(&checked.library, &site, &from, days, format)?;
            std::io::stdout().lock().write_all(text.as_bytes())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Scene(SceneCommand::Schema { out }) => scene_schema(out),
        Command::Scene(SceneCommand::Render {
            scene,
            at,
            duration,
            fps,
            width,
            out,
            library,
        }) => {
            let checked = checked_library(&library)?;
            let duration = duration
                .as_deref()
                .map(render::parse_duration)
                .transpose()?;
            if !(320..=4096).contains(&width) {
                anyhow::bail!("--width {width}: pictures are 320 to 4096 pixels wide");
            }
            if !(1..=50).contains(&fps) {
                anyhow::bail!("--fps {fps}: animations run at 1 to 50 frames a second");
            }
            let request = render::Request {
                scene: &scene,
                at: &at,
                duration,
                fps,
                width,
                out: &out,
            };
            let summary = render::run(&checked.library, &request)?;
            eprintln!("{summary}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn scene_check(dir: PathBuf, today: Option<&str>) -> Result<ExitCode> {
    let (files, mut checked) = library::load(&dir)?;
    let today: jiff::civil::Date = match today {
        Some(text) => text
            .parse()
            .map_err(|_| anyhow::anyhow!("--today `{text}` is not a date such as 2026-12-24"))?,
        None => jiff::Timestamp::now()
            .to_zoned_datetime(jiff::tz::TimeZone::UTC)
            .date(),
    };
    let path_of = |id: &nightscape_core::calendar::CalendarId| {
        let ics = format!("calendars/{id}.ics");
        let name = if files.iter().any(|f| f.path == ics) {
            ics
        } else {
            format!("calendars/{id}.toml")
        };
        dir.join(name).display().to_string()
    };
    let expiring = nightscape_core::show::expiring_calendars(&checked.library, today, path_of);
    checked.diagnostics.extend(expiring);
    let mut stdout = std::io::stdout().lock();
    for d in &checked.diagnostics {
        writeln!(stdout, "{d}")?;
    }
    stdout.flush()?;
    let (errors, warnings) = (checked.error_count(), checked.warning_count());
    let lib = &checked.library;
    eprintln!(
        "{}: {} sites, {} profiles; {errors} error{}, {warnings} warning{}",
        dir.display(),
        lib.sites.len(),
        lib.profiles.len(),
        if errors == 1 { "" } else { "s" },
        if warnings == 1 { "" } else { "s" },
    );
    Ok(if errors > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Loads a library and prints its errors. Sites with errors are left out of it, so the
/// commands that use it still work on every other site and say so for the broken one.
fn checked_library(dir: &std::path::Path) -> Result<nightscape_core::show::Checked> {
    let checked = library::check_dir(dir)?;
    for d in checked
        .diagnostics
        .iter()
        .filter(|d| d.severity == nightscape_core::diag::Severity::Error)
    {
        eprintln!("{d}");
    }
    if checked.error_count() > 0 {
        eprintln!(
            "{}: {} errors; sites with errors are left out until they are fixed (`nightscape scene check {}`)",
            dir.display(),
            checked.error_count(),
            dir.display()
        );
    }
    Ok(checked)
}

fn scene_schema(out: PathBuf) -> Result<ExitCode> {
    fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    for (name, text) in schema::all() {
        let path = out.join(name);
        fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}
