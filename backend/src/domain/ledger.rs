//! Double-entry bookkeeping. Every movement of money is an [`Entry`] whose postings sum to
//! zero; it is written in the same database transaction as the state it pays for.
//!
//! Sign convention: positive = credit (what the city owes, e.g. a driver's wallet; or has
//! earned, a point's revenue); negative = debit (what is owed to the city or held for it:
//! processor clearing, carrier receivable, a warden's cash, sandbox funding).

pub use iparking_mobile_api::RevenueChannel;

use super::money::Vnd;

/// Kinds of ledger account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AccountKind {
    /// A driver's prepaid wallet (liability). Never negative.
    Wallet,
    /// Money the card processor owes us.
    ProcessorClearing,
    /// Money a mobile carrier owes us (SMS).
    CarrierReceivable,
    /// The carrier's share of SMS revenue.
    CarrierFee,
    /// Cash a warden holds for the city.
    WardenCash,
    /// Revenue earned at a point (rolled up per street and district).
    PointRevenue,
    /// Refunds paid out.
    Refunds,
    /// The city's cash office: wardens hand their cash over to it.
    CashOffice,
    /// Cash a warden took that could not pay for a session (suspense, settled by finance).
    UnappliedCash,
    /// The demo sandbox's source of play money. Never used in production.
    SandboxFunding,
    /// A driver's wallet money held for a refund request until finance decides.
    RefundHold,
    /// Amounts finance wrote off (losses and gains), with reason and author.
    WriteOff,
    /// A warden's prepaid float (topped up by finance), from which the warden pays parking
    /// on a driver's behalf. Never negative.
    WardenFloat,
}

impl AccountKind {
    /// The database name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Wallet => "wallet",
            Self::ProcessorClearing => "processor_clearing",
            Self::CarrierReceivable => "carrier_receivable",
            Self::CarrierFee => "carrier_fee",
            Self::WardenCash => "warden_cash",
            Self::PointRevenue => "point_revenue",
            Self::Refunds => "refunds",
            Self::CashOffice => "cash_office",
            Self::UnappliedCash => "unapplied_cash",
            Self::SandboxFunding => "sandbox_funding",
            Self::RefundHold => "refund_hold",
            Self::WriteOff => "write_off",
            Self::WardenFloat => "warden_float",
        }
    }
}

/// An account: a kind and what it belongs to (driver id, point id, warden id, carrier).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Account {
    /// Kind.
    pub kind: AccountKind,
    /// Owner reference (`""` for singletons).
    pub reference: String,
}

impl Account {
    /// A driver's wallet.
    pub fn wallet(driver_id: i64) -> Self {
        Self { kind: AccountKind::Wallet, reference: driver_id.to_string() }
    }

    /// A point's revenue.
    pub fn point_revenue(point_id: i64) -> Self {
        Self { kind: AccountKind::PointRevenue, reference: point_id.to_string() }
    }

    /// What the card processor owes us (one account).
    pub fn processor() -> Self {
        Self { kind: AccountKind::ProcessorClearing, reference: String::new() }
    }

    /// Money owed back to cards: refunds decided, not yet confirmed by the processor.
    pub fn card_refunds() -> Self {
        Self { kind: AccountKind::Refunds, reference: "card".into() }
    }

    /// Cash a warden holds for the city.
    pub fn warden_cash(staff_id: i64) -> Self {
        Self { kind: AccountKind::WardenCash, reference: staff_id.to_string() }
    }

    /// A warden's prepaid float.
    pub fn warden_float(staff_id: i64) -> Self {
        Self { kind: AccountKind::WardenFloat, reference: staff_id.to_string() }
    }

    /// The city's cash office.
    pub fn cash_office() -> Self {
        Self { kind: AccountKind::CashOffice, reference: String::new() }
    }

    /// Suspense for cash that could not pay for a session.
    pub fn unapplied_cash() -> Self {
        Self { kind: AccountKind::UnappliedCash, reference: String::new() }
    }

    /// A driver's wallet money held for a refund request.
    pub fn refund_hold(driver_id: i64) -> Self {
        Self { kind: AccountKind::RefundHold, reference: driver_id.to_string() }
    }

    /// The city's written-off amounts.
    pub fn write_off() -> Self {
        Self { kind: AccountKind::WriteOff, reference: String::new() }
    }

    /// The sandbox's play-money source.
    pub fn sandbox() -> Self {
        Self { kind: AccountKind::SandboxFunding, reference: String::new() }
    }
}

/// One side of an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posting {
    /// The account.
    pub account: Account,
    /// Signed amount, never zero.
    pub amount: Vnd,
    /// For revenue (a point's revenue, and the carrier's share of an SMS turn): the channel
    /// and the point it is attributed to. The revenue reports group these postings.
    pub revenue: Option<(RevenueChannel, i64)>,
}

impl Posting {
    /// A posting that is not revenue.
    pub fn plain(account: Account, amount: Vnd) -> Self {
        Self { account, amount, revenue: None }
    }

    /// A point's revenue through `channel`.
    pub fn revenue(point_id: i64, channel: RevenueChannel, amount: Vnd) -> Self {
        Self { account: Account::point_revenue(point_id), amount, revenue: Some((channel, point_id)) }
    }
}

/// A balanced set of postings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// What happened, e.g. `session_start`.
    pub kind: &'static str,
    /// The postings; they sum to zero.
    pub postings: Vec<Posting>,
}

/// An entry that does not balance, or has a zero or lone posting: always a bug.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unbalanced ledger entry {kind}: postings sum to {sum}")]
pub struct Unbalanced {
    /// Entry kind.
    pub kind: &'static str,
    /// The sum.
    pub sum: i64,
}

impl Entry {
    /// The postings' indexes in the order their accounts are locked: by kind and reference,
    /// bytewise, everywhere, so that concurrent entries sharing accounts never wait on each
    /// other in a cycle.
    pub fn lock_order(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.postings.len()).collect();
        order.sort_by(|&a, &b| {
            let (a, b) = (&self.postings[a].account, &self.postings[b].account);
            (a.kind.as_str(), &a.reference).cmp(&(b.kind.as_str(), &b.reference))
        });
        order
    }

    /// Builds an entry, dropping zero postings; refuses one that does not balance.
    pub fn new(kind: &'static str, postings: Vec<Posting>) -> Result<Entry, Unbalanced> {
        let postings: Vec<Posting> = postings.into_iter().filter(|p| p.amount != Vnd::ZERO).collect();
        let sum: i64 = postings.iter().map(|p| p.amount.get()).sum();
        if sum != 0 || postings.len() == 1 {
            return Err(Unbalanced { kind, sum });
        }
        Ok(Entry { kind, postings })
    }

    /// A driver pays `amount` from the wallet for parking at a point.
    pub fn wallet_payment(kind: &'static str, driver_id: i64, point_id: i64, amount: Vnd) -> Result<Entry, Unbalanced> {
        Entry::new(
            kind,
            vec![
                Posting::plain(Account::wallet(driver_id), -amount),
                Posting::revenue(point_id, RevenueChannel::Wallet, amount),
            ],
        )
    }

    /// Unused parking is refunded from a point's revenue to the wallet.
    pub fn wallet_refund(driver_id: i64, point_id: i64, amount: Vnd) -> Result<Entry, Unbalanced> {
        Entry::new(
            "session_refund",
            vec![
                Posting::revenue(point_id, RevenueChannel::Wallet, -amount),
                Posting::plain(Account::wallet(driver_id), amount),
            ],
        )
    }

    /// Parking paid by card: the processor owes us, the point earns it.
    pub fn card_payment(kind: &'static str, point_id: i64, amount: Vnd) -> Result<Entry, Unbalanced> {
        Entry::new(
            kind,
            vec![
                Posting::plain(Account::processor(), -amount),
                Posting::revenue(point_id, RevenueChannel::Card, amount),
            ],
        )
    }

    /// Parking paid in cash to a warden: the warden holds the cash for the city, the point
    /// earns it.
    pub fn cash_payment(kind: &'static str, staff_id: i64, point_id: i64, amount: Vnd) -> Result<Entry, Unbalanced> {
        Entry::new(
            kind,
            vec![
                Posting::plain(Account::warden_cash(staff_id), -amount),
                Posting::revenue(point_id, RevenueChannel::WardenCash, amount),
            ],
        )
    }

    /// Parking paid from a warden's float on the driver's behalf: the float goes down (never
    /// below zero), the point earns it under its own channel.
    pub fn float_payment(kind: &'static str, staff_id: i64, point_id: i64, amount: Vnd) -> Result<Entry, Unbalanced> {
        Entry::new(
            kind,
            vec![
                Posting::plain(Account::warden_float(staff_id), -amount),
                Posting::revenue(point_id, RevenueChannel::WardenFloat, amount),
            ],
        )
    }

    /// Finance tops up a warden's float: the warden handed the money to the cash office.
    pub fn float_topup(staff_id: i64, amount: Vnd) -> Result<Entry, Unbalanced> {
        Entry::new(
            "float_topup",
            vec![
                Posting::plain(Account::cash_office(), -amount),
                Posting::plain(Account::warden_float(staff_id), amount),
            ],
        )
    }

    /// Cash taken for a session that could not be applied: held in suspense.
    pub fn cash_unapplied(staff_id: i64, amount: Vnd) -> Result<Entry, Unbalanced> {
        Entry::new(
            "cash_unapplied",
            vec![
                Posting::plain(Account::warden_cash(staff_id), -amount),
                Posting::plain(Account::unapplied_cash(), amount),
            ],
        )
    }

    /// A warden hands cash over to the cash office at the end of a shift.
    pub fn cash_handover(staff_id: i64, amount: Vnd) -> Result<Entry, Unbalanced> {
        Entry::new(
            "cash_handover",
            vec![
                Posting::plain(Account::cash_office(), -amount),
                Posting::plain(Account::warden_cash(staff_id), amount),
            ],
        )
    }

    /// Moves `amount` between two accounts (`from` goes down by it on the credit side).
    pub fn transfer(kind: &'static str, from: Account, to: Account, amount: Vnd) -> Result<Entry, Unbalanced> {
        Entry::new(kind, vec![Posting::plain(from, -amount), Posting::plain(to, amount)])
    }

    /// Demo only: play money into a wallet.
    pub fn sandbox_topup(driver_id: i64, amount: Vnd) -> Result<Entry, Unbalanced> {
        Entry::new(
            "sandbox_topup",
            vec![Posting::plain(Account::sandbox(), -amount), Posting::plain(Account::wallet(driver_id), amount)],
        )
    }

    /// A turn bought by SMS: the point earns the gross; the carrier owes us the net and
    /// keeps its share (`share_percent` of the gross, rounded to the đồng).
    pub fn sms_payment(
        kind: &'static str,
        carrier: &str,
        point_id: i64,
        gross: Vnd,
        share_percent: u32,
    ) -> Result<Entry, Unbalanced> {
        let fee = Vnd((gross.get() * i64::from(share_percent) + 50) / 100);
        Entry::new(
            kind,
            vec![
                Posting::revenue(point_id, RevenueChannel::Sms, gross),
                Posting::plain(
                    Account { kind: AccountKind::CarrierReceivable, reference: carrier.to_owned() },
                    -(gross - fee),
                ),
                Posting {
                    account: Account { kind: AccountKind::CarrierFee, reference: carrier.to_owned() },
                    amount: -fee,
                    revenue: Some((RevenueChannel::Sms, point_id)),
                },
            ],
        )
    }

    /// Whether the entry is empty (every posting was zero).
    pub fn is_empty(&self) -> bool {
        self.postings.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_balance_or_are_refused() {
        let e = Entry::wallet_payment("session_start", 1, 2, Vnd(25_000)).unwrap();
        assert_eq!(e.postings.iter().map(|p| p.amount.get()).sum::<i64>(), 0);
        assert_eq!(e.postings[0].account, Account::wallet(1));
        assert_eq!(e.postings[0].amount, Vnd(-25_000));
        assert!(Entry::new("x", vec![Posting::plain(Account::sandbox(), Vnd(5))]).is_err());
        let lopsided = vec![Posting::plain(Account::sandbox(), Vnd(-5)), Posting::plain(Account::wallet(1), Vnd(6))];
        assert_eq!(Entry::new("x", lopsided).unwrap_err().sum, 1);
        assert!(Entry::wallet_refund(1, 2, Vnd(0)).unwrap().is_empty());
        let sms = Entry::sms_payment("sms_start", "viettel", 7, Vnd(25_000), 10).unwrap();
        let amounts: Vec<i64> = sms.postings.iter().map(|p| p.amount.get()).collect();
        assert_eq!(amounts, [25_000, -22_500, -2_500]);
        let cash = Entry::cash_payment("cash_start", 3, 7, Vnd(50_000)).unwrap();
        assert_eq!(cash.postings[0].account, Account::warden_cash(3));
        assert_eq!(cash.postings[0].amount, Vnd(-50_000));
        let back = Entry::cash_handover(3, Vnd(50_000)).unwrap();
        let net: i64 = cash
            .postings
            .iter()
            .chain(&back.postings)
            .filter(|p| p.account == Account::warden_cash(3))
            .map(|p| p.amount.get())
            .sum();
        assert_eq!(net, 0, "a full handover leaves the warden owing nothing");
        assert!(Entry::cash_handover(3, Vnd(0)).unwrap().is_empty());
    }
}
