//! `verify`: after a run (and after the fault runs), checks the ledger invariants, that every
//! session the server answered as started is in the database and paid, and, with a Redis
//! URL, that the live state agrees with the database (occupancy and the plate index).

use std::{collections::HashMap, path::Path, sync::Arc};

use anyhow::{Context, bail};
use iparking::{
    config::{DatabaseArgs, LiveArgs},
    live::LiveState,
    store::Store,
};

/// Runs the checks; an `Err` names every failure.
pub async fn run(
    database_url: &str,
    sessions: Option<&Path>,
    redis_url: Option<&str>,
    redis_prefix: &str,
) -> anyhow::Result<()> {
    let args = DatabaseArgs {
        database_url: Some(database_url.to_owned()),
        data_dir: std::env::temp_dir(),
        db_max_connections: 2,
    };
    let store: Arc<dyn Store> = args.connect().await?;
    let mut failures: Vec<String> = vec![];

    let report = store.ledger_report().await?;
    println!(
        "ledger: {} unbalanced transactions, {} balance mismatches, {} negative wallets, point revenue {} vs sessions {}",
        report.unbalanced_transactions.len(),
        report.balance_mismatches.len(),
        report.negative_wallets.len(),
        report.revenue_vs_sessions.0,
        report.revenue_vs_sessions.1
    );
    if !report.is_sound() {
        failures.push(format!("the ledger is not sound: {report:?}"));
    }

    if let Some(path) = sessions {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let ids: Vec<i64> =
            text.lines().filter(|l| !l.trim().is_empty()).map(|l| l.trim().parse()).collect::<Result<_, _>>()?;
        let mut missing = vec![];
        let mut unpaid = vec![];
        for id in &ids {
            match store.session(*id).await? {
                None => missing.push(*id),
                Some(s) if s.amount_charged.0 <= 0 => unpaid.push(*id),
                Some(_) => {}
            }
        }
        println!(
            "sessions: {} answered as started, {} missing from the database, {} without a charge",
            ids.len(),
            missing.len(),
            unpaid.len()
        );
        if !missing.is_empty() || !unpaid.is_empty() {
            failures.push(format!("lost sessions: missing {missing:?}, unpaid {unpaid:?}"));
        }
    }

    if let Some(url) = redis_url {
        let live: Arc<dyn LiveState> =
            LiveArgs { redis_url: Some(url.to_owned()), redis_prefix: redis_prefix.to_owned() }.connect().await?;
        let db: HashMap<i64, i64> = store.occupied_by_point().await?.into_iter().collect();
        let points: Vec<i64> = store.points().await?.iter().map(|p| p.id).collect();
        let in_redis = live.occupancy(&points).await?;
        let wrong: Vec<(i64, i64, i64)> = points
            .iter()
            .zip(&in_redis)
            .filter(|(id, n)| db.get(id).copied().unwrap_or(0) != **n)
            .map(|(id, n)| (*id, db.get(id).copied().unwrap_or(0), *n))
            .collect();
        let active = store.active_sessions().await?;
        let mut unindexed = 0;
        for s in &active {
            if live.active_plate(s.plate.as_str()).await?.is_none_or(|e| e.session_id != s.id) {
                unindexed += 1;
            }
        }
        println!(
            "live state: {} points, {} with occupancy unlike the database; {} active sessions, {} missing from the plate index",
            points.len(),
            wrong.len(),
            active.len(),
            unindexed
        );
        if !wrong.is_empty() || unindexed > 0 {
            let sample: Vec<_> = wrong.iter().take(10).collect();
            failures.push(format!(
                "live state differs from the database: {} points (first: (point, db, redis) {sample:?}), {unindexed} plates",
                wrong.len()
            ));
        }
    }

    if failures.is_empty() {
        println!("verify: ok");
        Ok(())
    } else {
        bail!("verify failed:\n- {}", failures.join("\n- "))
    }
}
