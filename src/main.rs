//! The `meshprov` command-line tool. Thin: it parses arguments and calls the library.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
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
    /// Work with mesh keys offline.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
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

fn code(c: i32) -> ExitCode {
    ExitCode::from(u8::try_from(c).unwrap_or(1))
}
