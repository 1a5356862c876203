//! `tenants`: list, usage, quota, delete; and the `--tenant` scope of the key commands.

use clap::Subcommand;
use hybridstore::HybridStorageSystem;
use hybridstore::tenants::TenantQuota;

use crate::Ui;
use crate::failure::{ExitCode, Failure};
use crate::output::human_bytes;

#[derive(Subcommand, Debug)]
pub(crate) enum TenantsCommand {
    /// Every registered tenant with its quota
    List,
    /// What a tenant holds on every engine: keys, bytes, documents, sessions, vectors
    Usage {
        /// The tenant
        name: String,
    },
    /// Set a tenant's quota (registering it if new); a limit left out is removed
    Quota {
        /// The tenant
        name: String,
        /// Logical bytes of its values
        #[arg(long)]
        max_bytes: Option<u64>,
        /// Keys of its namespace
        #[arg(long)]
        max_keys: Option<u64>,
        /// Records per vector collection
        #[arg(long)]
        max_vectors: Option<u64>,
    },
    /// Delete a tenant from every engine (keys, documents, sessions, vectors, analytics)
    Delete {
        /// The tenant
        name: String,
    },
}

fn limit(max: Option<u64>, show: impl Fn(u64) -> String) -> String {
    max.map_or_else(|| "-".to_string(), show)
}

pub(crate) async fn run(
    system: &HybridStorageSystem,
    command: TenantsCommand,
    ui: &Ui,
) -> Result<ExitCode, Failure> {
    match command {
        TenantsCommand::List => {
            let tenants = system.tenants().await?;
            if ui.json {
                ui.print_json(&tenants)?;
            } else {
                println!(
                    "{:<24} {:>12} {:>10} {:>12}",
                    "tenant", "max bytes", "max keys", "max vectors"
                );
                for t in tenants {
                    println!(
                        "{:<24} {:>12} {:>10} {:>12}",
                        t.name,
                        limit(t.quota.max_bytes, human_bytes),
                        limit(t.quota.max_keys, |n| n.to_string()),
                        limit(t.quota.max_vectors, |n| n.to_string()),
                    );
                }
            }
        }
        TenantsCommand::Usage { name } => {
            let usage = system.tenant(&name).await?.usage().await?;
            if ui.json {
                ui.print_json(&usage)?;
            } else {
                let of = |max: Option<u64>, show: &dyn Fn(u64) -> String| {
                    max.map_or_else(String::new, |m| format!(" of {}", show(m)))
                };
                println!("tenant     {}", usage.tenant);
                println!(
                    "keys       {}{}",
                    usage.keys,
                    of(usage.quota.max_keys, &|n| n.to_string())
                );
                println!(
                    "bytes      {}{}",
                    human_bytes(usage.bytes),
                    of(usage.quota.max_bytes, &human_bytes)
                );
                println!("documents  {}", usage.documents);
                println!("sessions   {}", usage.sessions);
                for (collection, n) in &usage.vectors {
                    println!(
                        "vectors    {n}{} in {collection}",
                        of(usage.quota.max_vectors, &|n| n.to_string())
                    );
                }
            }
        }
        TenantsCommand::Quota {
            name,
            max_bytes,
            max_keys,
            max_vectors,
        } => {
            let mut quota = TenantQuota::unlimited();
            if let Some(n) = max_bytes {
                quota = quota.with_max_bytes(n);
            }
            if let Some(n) = max_keys {
                quota = quota.with_max_keys(n);
            }
            if let Some(n) = max_vectors {
                quota = quota.with_max_vectors(n);
            }
            system.set_tenant_quota(&name, quota).await?;
            if ui.json {
                ui.print_json(&quota)?;
            } else if !ui.quiet {
                println!("quota of {name} set");
            }
        }
        TenantsCommand::Delete { name } => {
            let deletion = system.delete_tenant(&name).await?;
            if ui.json {
                ui.print_json(&deletion)?;
            } else {
                println!(
                    "deleted tenant {name}: {} keys, {} documents, {} sessions, {} vectors, {} \
                     analytics events",
                    deletion.keys,
                    deletion.documents,
                    deletion.sessions,
                    deletion.vectors,
                    deletion.analytics_events
                );
            }
            if !deletion.registered {
                return Ok(ExitCode::NotFound);
            }
        }
    }
    Ok(ExitCode::Ok)
}
