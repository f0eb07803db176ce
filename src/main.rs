//! The `meshprov` command-line tool. Thin: it parses arguments and calls the library.

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use meshprov::provisioning::AlgorithmPolicy;
use meshprov::sim::run::BearerChoice;
use meshprov::tools::provision::{AuthArg, ProvisionArgs};
use meshprov::uuid::DeviceUuid;
use meshprov::{exit, tools};

/// Bluetooth mesh provisioner for Linux.
#[derive(Debug, Parser)]
#[command(name = "meshprov", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Provision one device: Link Open, the ECDH handshake, authentication, Provisioning Data.
    Provision {
        /// The device UUID (32 hex digits, dashes allowed).
        uuid: String,
        /// Which radio: `sim:FILE.toml` runs on the simulated building described by FILE.
        #[arg(long, value_name = "RADIO")]
        radio: String,
        /// Authentication: auto, none, static:HEX, output, input, oob-public-key:HEX128, cert.
        #[arg(long, default_value = "auto", value_name = "METHOD")]
        auth: String,
        /// Provisioning algorithm: auto (HMAC-SHA256 when offered), cmac or hmac.
        #[arg(long, value_enum, default_value_t = AlgorithmArg::Auto)]
        algorithm: AlgorithmArg,
        /// Provisioning bearer.
        #[arg(long, value_enum, default_value_t = BearerArg::Adv)]
        bearer: BearerArg,
        /// Node journal to store the device key in (created with mode 0600).
        #[arg(long, value_name = "FILE")]
        store: Option<std::path::PathBuf>,
        /// Print the device key.
        #[arg(long)]
        show_keys: bool,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
        /// Seed of the simulation (same seed, same run).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Packet loss on the simulated advertising bearer, 0.0 to 0.9 (overrides the file).
        #[arg(long)]
        loss: Option<f64>,
    },
    /// Work with mesh keys offline.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum AlgorithmArg {
    Auto,
    Cmac,
    Hmac,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum BearerArg {
    Adv,
    Gatt,
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Print the values derived from a NetKey (and an AppKey): NID, encryption and privacy
    /// keys, Network ID, identity, beacon and private beacon keys, AID.
    Derive {
        /// The network key, 32 hex digits.
        #[arg(long, value_name = "HEX")]
        net_key: String,
        /// An application key, 32 hex digits, to derive its AID.
        #[arg(long, value_name = "HEX")]
        app_key: Option<String>,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Provision {
            uuid,
            radio,
            auth,
            algorithm,
            bearer,
            store,
            show_keys,
            json,
            seed,
            loss,
        } => {
            let uuid: DeviceUuid = match uuid.parse() {
                Ok(u) => u,
                Err(e) => return usage(&e),
            };
            let auth: AuthArg = match auth.parse() {
                Ok(a) => a,
                Err(e) => return usage(&e),
            };
            if let Some(l) = loss.filter(|l| !(0.0..=0.9).contains(l)) {
                return usage(&format!(
                    "invalid --loss {l}: give a probability from 0.0 to 0.9"
                ));
            }
            let args = ProvisionArgs {
                uuid,
                radio,
                auth,
                algorithm: match algorithm {
                    AlgorithmArg::Auto => AlgorithmPolicy::Auto,
                    AlgorithmArg::Cmac => AlgorithmPolicy::Cmac,
                    AlgorithmArg::Hmac => AlgorithmPolicy::Hmac,
                },
                bearer: match bearer {
                    BearerArg::Adv => BearerChoice::Adv,
                    BearerArg::Gatt => BearerChoice::Gatt,
                },
                store,
                show_keys,
                seed,
                loss,
            };
            match tools::provision::provision(&args) {
                Ok(r) if json => println!("{}", serde_json::to_string(&r).unwrap_or_default()),
                Ok(r) => print!("{}", r.to_text()),
                Err(f) => {
                    if json {
                        let v = serde_json::json!({"result": "failed", "uuid": f.uuid, "error": f.message});
                        println!("{v}");
                    }
                    eprintln!("meshprov: {}", f.message);
                    return code(f.exit_code);
                }
            }
        }
        Command::Keys {
            command:
                KeysCommand::Derive {
                    net_key,
                    app_key,
                    json,
                },
        } => match tools::keys::derive_from_args(&net_key, app_key.as_deref()) {
            Ok(d) if json => println!("{}", d.to_json()),
            Ok(d) => print!("{}", d.to_text()),
            Err(e) => {
                eprintln!("meshprov: {e}");
                return code(exit::USAGE);
            }
        },
    }
    code(exit::SUCCESS)
}

fn usage(e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("meshprov: {e}");
    code(exit::USAGE)
}

fn code(c: i32) -> ExitCode {
    ExitCode::from(u8::try_from(c).unwrap_or(1))
}
