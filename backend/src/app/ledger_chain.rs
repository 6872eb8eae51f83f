//! The tamper-evident ledger (issue 34; docs/decisions/0026-ledger-hash-chain.md).
//!
//! - [`seal`]: the sealer (one node at a time, under a lease) gives every committed ledger
//!   transaction its place in one chain and its hash, in the order they were written, about a
//!   second after they commit.
//! - [`make_digests`]: after a Hanoi day ends and its transactions are sealed, its digest
//!   (the chain's segment for the day, its last hash and totals) is stored, and published at
//!   `/public/ledger/digests`.
//! - [`verify_store`] re-computes the chain from the database and names the first broken link;
//!   [`export_day`] writes a day's segment in the canonical form ([`verify_export`] and
//!   `docs/ledger-rehash.py` re-hash it).

use chrono::{DateTime, Days, NaiveDate, TimeZone, Utc};

use crate::{
    App,
    domain::{
        ledger_chain::{self, Broken, ChainTx, GENESIS},
        tariff::LOCAL_TZ,
    },
    error::AppError,
    store::{Store, chain::DigestRow},
};

/// Most transactions sealed in one database transaction.
pub const SEAL_BATCH: i64 = 5_000;
/// A transaction is sealed once it is this old, so that those written at about the same
/// time on several nodes are sealed in the order they were written.
pub const SEAL_DELAY: chrono::Duration = chrono::Duration::seconds(1);
/// A day is digested this long after it ends (a transaction commits within a request's
/// timeout of being written).
pub const DIGEST_DELAY: chrono::Duration = chrono::Duration::minutes(2);
/// Transactions read at a time by [`verify_store`] and [`export_day`].
const PAGE: i64 = 5_000;

/// Seals every transaction older than [`SEAL_DELAY`] not sealed yet; how many were sealed.
pub async fn seal(app: &App) -> Result<u64, AppError> {
    let cutoff = app.clock.now() - SEAL_DELAY;
    let mut total = 0;
    loop {
        let n = app.store.seal_ledger(&app.receipt_key, cutoff, SEAL_BATCH).await?;
        total += n;
        if n < SEAL_BATCH as u64 {
            break;
        }
    }
    if total > 0 {
        metrics::counter!("ledger_transactions_sealed_total").increment(total);
    }
    Ok(total)
}

/// A Hanoi day's bounds, in UTC.
pub fn day_bounds(day: NaiveDate) -> (DateTime<Utc>, DateTime<Utc>) {
    let start = |d: NaiveDate| {
        LOCAL_TZ
            .from_local_datetime(&d.and_time(chrono::NaiveTime::MIN))
            .earliest()
            .map_or_else(|| d.and_time(chrono::NaiveTime::MIN).and_utc(), |t| t.to_utc())
    };
    (start(day), start(day + Days::new(1)))
}

/// Makes the digests of the days that ended (and are sealed) since the last one, oldest
/// first; returns those made by this call.
pub async fn make_digests(app: &App) -> Result<Vec<DigestRow>, AppError> {
    let now = app.clock.now();
    let mut made = Vec::new();
    let mut last = app.store.digests(1).await?.into_iter().next();
    // A month at most per call; the next call goes on.
    for _ in 0..31 {
        let day = match &last {
            Some(d) => match NaiveDate::parse_from_str(&d.day, "%Y-%m-%d") {
                Ok(day) => day + Days::new(1),
                Err(_) => return Err(AppError::internal(&format!("a digest's day {:?} is not a date", d.day))),
            },
            None => match app.store.first_ledger_time().await? {
                Some(t) => t.with_timezone(&LOCAL_TZ).date_naive(),
                None => break,
            },
        };
        let (start, end) = day_bounds(day);
        if now < end + DIGEST_DELAY || app.store.unsealed(end).await? > 0 {
            break;
        }
        let (prev_to, prev_hash) = last.as_ref().map_or((0, GENESIS.to_owned()), |d| (d.to_seq, d.last_hash.clone()));
        let to_seq = app.store.max_seq_between(start, end).await?.unwrap_or(prev_to).max(prev_to);
        let (transactions, moved) = app.store.seq_totals(prev_to + 1, to_seq).await?;
        let last_hash = if to_seq == prev_to {
            prev_hash
        } else {
            match app.store.chain_link(to_seq).await? {
                Some((_, hash)) => hash,
                None => return Err(AppError::internal(&format!("no sealed transaction at place {to_seq}"))),
            }
        };
        let digest = DigestRow {
            day: day.format("%Y-%m-%d").to_string(),
            from_seq: prev_to + 1,
            to_seq,
            transactions,
            moved,
            last_hash,
            made_at: now,
        };
        if app.store.insert_digest(&digest).await? {
            tracing::info!(day = %digest.day, transactions, to_seq, "ledger day digested");
            made.push(digest.clone());
            last = Some(digest);
        } else {
            // Another node digested it meanwhile: go on from what it stored.
            last = app.store.digests(1).await?.into_iter().next();
        }
    }
    Ok(made)
}

/// What [`verify_store`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Sealed transactions checked.
    pub checked: i64,
    /// The last good place and hash.
    pub head: (i64, String),
    /// Digests compared with the chain.
    pub digests_checked: usize,
    /// Transactions not sealed yet (the newest second's, normally).
    pub unsealed: i64,
    /// The first broken link, in words.
    pub broken: Option<String>,
}

/// Re-computes the whole chain from the database: every sealed transaction's hash from its
/// rows and the hash before, no place missing (the head's included), and every digest's hash
/// where its day ends; `anchors` are digests kept elsewhere (e.g. downloaded from
/// `/public/ledger/digests.json` earlier), compared too.
pub async fn verify_store(store: &dyn Store, key: &[u8], anchors: &[DigestRow]) -> Result<VerifyReport, AppError> {
    let mut digests = store.digests(i64::MAX).await?;
    digests.extend(anchors.iter().cloned());
    let mut ends: std::collections::BTreeMap<i64, Vec<DigestRow>> = std::collections::BTreeMap::new();
    for d in digests {
        ends.entry(d.to_seq).or_default().push(d);
    }
    // The head first: what the sealer seals meanwhile (past it) is left for the next run.
    let head = store.chain_head().await?;
    let mut prev = (0, GENESIS.to_owned());
    let mut prev_tx = None;
    let mut checked = 0;
    let mut digests_checked = 0;
    let mut broken = None;
    // Empty days before the first transaction end at place 0.
    digests_checked += check_ends(&ends, &prev, &mut broken);
    'walk: while broken.is_none() {
        let page = store.chain_txs(prev.0 + 1, PAGE).await?;
        if page.is_empty() {
            break;
        }
        for tx in &page {
            if tx.seq.is_some_and(|s| s > head.0) {
                break 'walk;
            }
            match ledger_chain::verify(key, prev.clone(), prev_tx, std::iter::once(tx)) {
                Ok((next, last)) => {
                    prev = next;
                    prev_tx = last;
                    checked += 1;
                    digests_checked += check_ends(&ends, &prev, &mut broken);
                    if broken.is_some() {
                        break 'walk;
                    }
                }
                Err(b) => {
                    broken = Some(b.to_string());
                    break 'walk;
                }
            }
        }
    }
    if broken.is_none() && head.0 != prev.0 {
        broken = Some(if head.0 > prev.0 {
            Broken::Gap { missing_from: prev.0 + 1, missing_to: head.0, after_tx: prev_tx, before_tx: 0 }
                .to_string()
                .replace("and transaction 0", "and the chain's head")
        } else {
            format!("the chain's head says place {}, but place {} is sealed", head.0, prev.0)
        });
    } else if broken.is_none() && head.1 != prev.1 {
        broken = Some(format!("the chain's head hash differs from the hash at place {}", prev.0));
    }
    if broken.is_none()
        && let Some((&beyond, _)) = ends.range(prev.0 + 1..).next()
    {
        broken = Some(format!("a digest ends at place {beyond}, beyond the chain's last place {}", prev.0));
    }
    let unsealed = store.unsealed(DateTime::<Utc>::MAX_UTC).await?;
    Ok(VerifyReport { checked, head: prev, digests_checked, unsealed, broken })
}

fn check_ends(
    ends: &std::collections::BTreeMap<i64, Vec<DigestRow>>,
    at: &(i64, String),
    broken: &mut Option<String>,
) -> usize {
    let Some(ds) = ends.get(&at.0) else { return 0 };
    for d in ds {
        if d.last_hash != at.1 {
            *broken = Some(format!(
                "the digest of {} says {} at place {}, the chain gives {}",
                d.day, d.last_hash, d.to_seq, at.1
            ));
        }
    }
    ds.len()
}

/// A day's segment of the chain, in the canonical form (`docs/open-data.md`): a comment, the
/// hash before it, and one line per transaction with its hash. `None` when the day has no
/// digest yet.
pub async fn export_day(store: &dyn Store, key: &[u8], day: NaiveDate) -> Result<Option<String>, AppError> {
    let Some(digest) = store.digest(&day.format("%Y-%m-%d").to_string()).await? else { return Ok(None) };
    let prev = if digest.from_seq <= 1 {
        GENESIS.to_owned()
    } else {
        match store.chain_link(digest.from_seq - 1).await? {
            Some((_, hash)) => hash,
            None => return Err(AppError::internal(&format!("no sealed transaction at place {}", digest.from_seq - 1))),
        }
    };
    let mut out = format!(
        "# iParking ledger, Hanoi day {}: places {}..{}, {} transactions.\n\
         # Each line: the canonical line, a bar, its hash = SHA-256(previous hash | line).\n\
         # Re-hash it: python3 docs/ledger-rehash.py FILE\nprev {prev}\n",
        digest.day, digest.from_seq, digest.to_seq, digest.transactions
    );
    let mut seq = digest.from_seq;
    while seq <= digest.to_seq {
        let page: Vec<ChainTx> = store.chain_txs(seq, PAGE.min(digest.to_seq - seq + 1)).await?;
        let before = seq;
        for tx in &page {
            let Some(at) = tx.seq.filter(|s| *s <= digest.to_seq) else { continue };
            // The line as it is now; a changed transaction's stored hash will not match it,
            // which the re-hash reports.
            let line = ledger_chain::canonical_line(key, at, tx);
            out.push_str(&line);
            out.push('|');
            out.push_str(tx.hash.as_deref().unwrap_or(""));
            out.push('\n');
            seq = at + 1;
        }
        if seq == before {
            break;
        }
    }
    Ok(Some(out))
}

/// What re-hashing an export gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportCheck {
    /// Transactions re-hashed.
    pub transactions: i64,
    /// The last hash (the day's digest's, when nothing was changed).
    pub last_hash: String,
}

/// Re-hashes an export, as `docs/ledger-rehash.py` does; the first broken line in words.
pub fn verify_export(text: &str) -> Result<ExportCheck, String> {
    let mut prev: Option<String> = None;
    let mut last_seq: Option<i64> = None;
    let mut n = 0;
    for (i, raw) in text.lines().enumerate() {
        let no = i + 1;
        if raw.starts_with('#') || raw.trim().is_empty() {
            continue;
        }
        if let Some(p) = raw.strip_prefix("prev ") {
            prev = Some(p.trim().to_owned());
            continue;
        }
        let Some(p) = prev.as_deref() else { return Err(format!("line {no}: no `prev` line before it")) };
        let Some((line, hash)) = raw.rsplit_once('|') else { return Err(format!("line {no}: no hash")) };
        let seq: i64 = line.split('|').next().and_then(|s| s.parse().ok()).ok_or(format!("line {no}: no place"))?;
        if let Some(l) = last_seq
            && seq != l + 1
        {
            return Err(format!("line {no}: place {seq} follows place {l}: places are missing"));
        }
        let expected = ledger_chain::link(p, line);
        if expected != hash {
            let tx = line.split('|').nth(1).unwrap_or("?");
            return Err(format!("line {no}: transaction {tx} (place {seq}) does not give its hash"));
        }
        prev = Some(expected);
        last_seq = Some(seq);
        n += 1;
    }
    Ok(ExportCheck { transactions: n, last_hash: prev.unwrap_or_else(|| GENESIS.to_owned()) })
}

/// Day exports one client address may download per [`EXPORT_WINDOW`] (each reads a whole
/// day of the ledger).
pub const EXPORTS_PER_WINDOW: u32 = 20;
/// The exports' window.
pub const EXPORT_WINDOW: std::time::Duration = std::time::Duration::from_secs(60 * 60);

/// A day's export for anyone (`/public/ledger/days/{day}.txt`): counted per client address
/// (429 beyond [`EXPORTS_PER_WINDOW`] an hour), 404 for a day without a digest.
pub async fn public_export(app: &App, peer: std::net::IpAddr, day: &str) -> Result<String, AppError> {
    let not_found = || {
        AppError::not_found(
            "not_found",
            "Ngày này chưa có dấu vân tay sổ cái (một ngày được chốt vài phút sau khi hết ngày).",
            "This day has no ledger digest (a day is digested a few minutes after it ends).",
        )
    };
    let day = NaiveDate::parse_from_str(day, "%Y-%m-%d").map_err(|_| not_found())?;
    if !app.live.rate_limit(&format!("ledger-export-ip:{peer}"), EXPORTS_PER_WINDOW, EXPORT_WINDOW).await? {
        return Err(AppError::too_many_requests(
            "rate_limited",
            "Tải bản xuất sổ cái quá nhiều lần. Vui lòng thử lại sau một giờ.",
            "Too many ledger exports. Please try again in an hour.",
        ));
    }
    export_day(app.store.as_ref(), &app.receipt_key, day).await?.ok_or_else(not_found)
}

/// The published digests, latest first.
pub async fn public_digests(app: &App, limit: i64) -> Result<Vec<DigestRow>, AppError> {
    Ok(app.store.digests(limit).await?)
}
