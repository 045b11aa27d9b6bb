//! `weft data list|fetch`: the evaluation data sets of the data manifest.

use anyhow::{bail, Result};

use crate::data::{self, DataManifest, DataStatus};

#[derive(clap::Subcommand, Debug)]
pub enum DataCommand {
    /// Show the data sets, their sources, licences and whether they are installed.
    List,
    /// Download, verify and install data sets into the data cache.
    Fetch(FetchArgs),
}

#[derive(clap::Args, Debug)]
pub struct FetchArgs {
    /// Data set names (see `weft data list`).
    pub names: Vec<String>,
    /// Fetch every data set.
    #[arg(long, conflicts_with = "names")]
    pub all: bool,
}

pub fn run(c: DataCommand) -> Result<()> {
    let m = DataManifest::builtin()?;
    let dir = data::data_dir()?;
    match c {
        DataCommand::List => {
            println!("data cache: {}", dir.display());
            for d in &m.datasets {
                let status = match d.status(&dir)? {
                    DataStatus::Installed => "installed".to_string(),
                    DataStatus::Missing => "missing".to_string(),
                    DataStatus::Damaged(why) => format!("damaged ({why})"),
                };
                println!("{:<12} {}=={} [{status}]", d.name, d.package, d.version);
                println!("  {}", d.description);
                println!("  licence: {}", d.licence);
            }
            Ok(())
        }
        DataCommand::Fetch(a) => {
            let chosen: Vec<_> = if a.all {
                m.datasets.iter().collect()
            } else if a.names.is_empty() {
                bail!("name a data set or pass --all (known: {})", m.known_names());
            } else {
                a.names.iter().map(|n| m.require(n)).collect::<Result<_>>()?
            };
            let opts = crate::fetch::fetch_options();
            for d in chosen {
                data::fetch::fetch(d, &dir, &opts, &mut |l| eprintln!("{l}"))?;
            }
            Ok(())
        }
    }
}
