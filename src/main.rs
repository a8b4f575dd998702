//! The `relay-gateway` binary: the gateway itself and its tools.

mod relay;
mod transcript;

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "relay-gateway",
    version,
    about = "A self-hostable gateway for the Azure Relay wire protocols"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Decode captured WCF bytes (net.tcp stream, hex dump, or one envelope) into a transcript.
    Decode {
        /// Input file, or `-` for stdin.
        file: PathBuf,
        /// The input is one msbin1 envelope.
        #[arg(long)]
        envelope: bool,
        /// With --envelope: the envelope starts with an in-band string table (msbinsession1).
        #[arg(long, requires = "envelope")]
        session: bool,
    },
    /// Encode an XML envelope as binary XML, written to stdout.
    Encode {
        /// XML file, or `-` for stdin.
        #[arg(long = "envelope", value_name = "FILE")]
        envelope: PathBuf,
        /// Write msbinsession1 (an in-band string table first).
        #[arg(long)]
        session: bool,
    },
}

fn read_input(path: &PathBuf) -> std::io::Result<Vec<u8>> {
    if path.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::stdin().read_to_end(&mut buf)?;
        Ok(buf)
    } else {
        std::fs::read(path)
    }
}

fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(1)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let limits = wcf::Limits::DEFAULT;
    match cli.command {
        Command::Decode {
            file,
            envelope,
            session,
        } => {
            let input = match read_input(&file) {
                Ok(i) => i,
                Err(e) => return fail(format_args!("{}: {e}", file.display())),
            };
            let result = if envelope {
                let kind = if session {
                    transcript::EnvelopeKind::Session
                } else {
                    transcript::EnvelopeKind::Plain
                };
                transcript::decode_envelope(&input, kind, limits).map(|mut x| {
                    x.push('\n');
                    x
                })
            } else {
                transcript::decode(&input, limits)
            };
            match result {
                Ok(text) => {
                    print!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => fail(e),
            }
        }
        Command::Encode { envelope, session } => {
            let input = match read_input(&envelope) {
                Ok(i) => i,
                Err(e) => return fail(format_args!("{}: {e}", envelope.display())),
            };
            let Ok(xml) = std::str::from_utf8(&input) else {
                return fail("input is not UTF-8");
            };
            let bytes = if session {
                let mut dict = wcf::nbfx::SessionDictionary::new(limits.max_session);
                wcf::nbfx::session_from_xml(xml, &mut dict)
            } else {
                wcf::nbfx::from_xml(xml)
            };
            match bytes {
                Ok(b) => match std::io::stdout().write_all(&b) {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => fail(e),
                },
                Err(e) => fail(e),
            }
        }
    }
}
