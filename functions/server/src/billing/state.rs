//! The subscription state machine, once for every provider: given the
//! subscription as stored and one [`BillingEvent`]'s change, what it becomes.
//! Pure; [`super::store`] reads, locks and writes around it.
//!
//! Ordering: providers deliver out of order and retry. An event older than
//! the last one applied changes nothing (stale). At the same instant (Stripe
//! and Polar times have second precision) a cancellation is not undone.

use chrono::{DateTime, Utc};

use super::{Change, Provider, RecordKind, Status};

/// A subscription as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Subscription {
    pub plan_id: String,
    pub provider: Option<Provider>,
    pub external_subscription_id: Option<String>,
    pub external_customer_id: Option<String>,
    pub status: Status,
    pub current_period_start: DateTime<Utc>,
    pub current_period_end: DateTime<Utc>,
    pub cancel_at_period_end: bool,
    pub last_event_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Write this subscription.
    Apply(Subscription),
    /// An older event: nothing changes.
    Stale,
    /// Not for this subscription, with the reason recorded.
    Ignore(String),
}

fn stale(current: &Subscription, occurred_at: DateTime<Utc>, next_status: Option<Status>) -> bool {
    match current.last_event_at {
        None => false,
        Some(last) if occurred_at < last => true,
        Some(last) if occurred_at == last => current.status == Status::Cancelled && next_status != Some(Status::Cancelled),
        Some(_) => false,
    }
}

/// Whether an event of `provider` about `external_subscription_id` may touch
/// `current`: an organisation bills through one provider and one
/// subscription at a time; a new one may follow a cancelled one or the trial.
pub fn belongs(current: &Subscription, provider: Provider, external_subscription_id: &str) -> Result<(), String> {
    if let Some(p) = current.provider
        && p != provider
        && current.status != Status::Cancelled
    {
        return Err(format!("the organisation bills through {}", p.as_str()));
    }
    match &current.external_subscription_id {
        Some(id) if id != external_subscription_id && current.provider == Some(provider) && current.status != Status::Cancelled => {
            Err(format!("the organisation has another live subscription ({id})"))
        }
        _ => Ok(()),
    }
}

/// `plan_id`: the plan the event's price maps to, when it maps to one.
pub fn decide(current: &Subscription, provider: Provider, occurred_at: DateTime<Utc>, change: &Change, plan_id: Option<&str>) -> Decision {
    let mut next = current.clone();
    match change {
        Change::Subscription(s) => {
            if let Err(reason) = belongs(current, provider, &s.external_subscription_id) {
                return Decision::Ignore(reason);
            }
            if stale(current, occurred_at, Some(s.status)) {
                return Decision::Stale;
            }
            next.provider = Some(provider);
            next.external_subscription_id = Some(s.external_subscription_id.clone());
            if let Some(c) = &s.external_customer_id {
                next.external_customer_id = Some(c.clone());
            }
            if let Some(plan) = plan_id {
                next.plan_id = plan.to_owned();
            }
            next.status = s.status;
            if let Some(start) = s.current_period_start {
                next.current_period_start = start;
            }
            if let Some(end) = s.current_period_end {
                // LemonSqueezy sends no start: the new period starts where the old one ended.
                if s.current_period_start.is_none() && end > current.current_period_end {
                    next.current_period_start = current.current_period_end.min(end);
                }
                next.current_period_end = end;
            }
            next.cancel_at_period_end = s.cancel_at_period_end;
        }
        Change::PaymentFailed { external_subscription_id } => {
            if let Err(reason) = belongs(current, provider, external_subscription_id) {
                return Decision::Ignore(reason);
            }
            if stale(current, occurred_at, Some(Status::PastDue)) {
                return Decision::Stale;
            }
            match current.status {
                Status::Active | Status::Trialing => next.status = Status::PastDue,
                // Already past due, paused or over: a failed retry changes nothing.
                _ => return Decision::Ignore(format!("the subscription is {}", current.status.as_str())),
            }
        }
        Change::Record(r) => {
            let Some(sub) = &r.external_subscription_id else { return Decision::Ignore("not for a subscription".into()) };
            if r.kind == RecordKind::Refund {
                return Decision::Ignore("a refund does not change the subscription".into());
            }
            if let Err(reason) = belongs(current, provider, sub) {
                return Decision::Ignore(reason);
            }
            if stale(current, occurred_at, Some(Status::Active)) {
                return Decision::Stale;
            }
            // A payment recovers a past-due subscription and renews it for the period it pays.
            if current.status == Status::PastDue {
                next.status = Status::Active;
            }
            if let Some((start, end)) = r.period
                && end > current.current_period_end
            {
                next.current_period_start = start;
                next.current_period_end = end;
            }
            if next == *current {
                return Decision::Ignore("nothing to change".into());
            }
        }
        Change::Customer { .. } | Change::Unknown => return Decision::Ignore("not a subscription change".into()),
    }
    next.last_event_at = Some(current.last_event_at.map_or(occurred_at, |last| last.max(occurred_at)));
    Decision::Apply(next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::billing::SubscriptionState;
    use chrono::Duration;

    fn trial() -> Subscription {
        let t = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        Subscription {
            plan_id: "trial".into(),
            provider: None,
            external_subscription_id: None,
            external_customer_id: None,
            status: Status::Trialing,
            current_period_start: t,
            current_period_end: t + Duration::days(30),
            cancel_at_period_end: false,
            last_event_at: None,
        }
    }

    fn sub(status: Status, end_days: i64) -> Change {
        let t = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        Change::Subscription(SubscriptionState {
            organization_id: None,
            external_subscription_id: "sub_1".into(),
            external_customer_id: Some("cus_1".into()),
            price_id: None,
            status,
            current_period_start: Some(t),
            current_period_end: Some(t + Duration::days(end_days)),
            cancel_at_period_end: false,
            customer_email: None,
        })
    }

    fn applied(d: Decision) -> Subscription {
        match d {
            Decision::Apply(s) => s,
            other => panic!("expected Apply, got {other:?}"),
        }
    }

    #[test]
    fn older_events_do_not_move_it_back() {
        let t = DateTime::from_timestamp(1_700_000_100, 0).unwrap();
        let active = applied(decide(&trial(), Provider::Stripe, t, &sub(Status::Active, 31), Some("growth")));
        assert_eq!((active.status, active.plan_id.as_str(), active.provider), (Status::Active, "growth", Some(Provider::Stripe)));
        let cancelled = applied(decide(&active, Provider::Stripe, t + Duration::seconds(10), &sub(Status::Cancelled, 31), None));
        assert_eq!(decide(&cancelled, Provider::Stripe, t + Duration::seconds(5), &sub(Status::Active, 31), None), Decision::Stale);
        // Same second: a cancellation is not undone.
        assert_eq!(decide(&cancelled, Provider::Stripe, t + Duration::seconds(10), &sub(Status::Active, 31), None), Decision::Stale);
        assert!(matches!(
            decide(&active, Provider::Paddle, t + Duration::seconds(20), &sub(Status::Active, 31), None),
            Decision::Ignore(_)
        ));
    }

    #[test]
    fn failed_payment_then_recovery() {
        let t = DateTime::from_timestamp(1_700_000_100, 0).unwrap();
        let active = applied(decide(&trial(), Provider::Paddle, t, &sub(Status::Active, 31), None));
        let failed = Change::PaymentFailed { external_subscription_id: "sub_1".into() };
        let past_due = applied(decide(&active, Provider::Paddle, t + Duration::seconds(1), &failed, None));
        assert_eq!(past_due.status, Status::PastDue);
        let paid = Change::Record(crate::billing::RecordEvent {
            kind: RecordKind::Payment,
            external_id: "txn_2".into(),
            organization_id: None,
            external_subscription_id: Some("sub_1".into()),
            external_customer_id: None,
            amount_minor: 900,
            currency: "EUR".into(),
            period: Some((active.current_period_end, active.current_period_end + Duration::days(30))),
            customer_email: None,
        });
        let recovered = applied(decide(&past_due, Provider::Paddle, t + Duration::seconds(2), &paid, None));
        assert_eq!(recovered.status, Status::Active);
        assert_eq!(recovered.current_period_end, active.current_period_end + Duration::days(30));
    }
}
