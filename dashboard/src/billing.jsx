// An organisation's billing, for its owners and billing members: the plan
// and its status, usage against the quota, the quota notices, choosing a
// plan (a checkout at the payment provider) or managing it (the provider's
// portal), invoices and payments, and the billing details invoices name.
import { useState } from "preact/hooks";
import { api } from "./api.js";
import { number } from "./format.js";
import { Form, Input, Loaded, Notice, Spinner, useLoad } from "./ui.jsx";

export const BILLING_ROLES = ["owner", "billing"];
export const canBill = (org) => BILLING_ROLES.includes(org.role);

const PROVIDERS = { stripe: "Stripe", paddle: "Paddle", lemonsqueezy: "Lemon Squeezy", polar: "Polar" };
const STATUS = { trialing: "Trialing", active: "Active", past_due: "Past due", paused: "Paused", cancelled: "Cancelled" };
const STATE = { ok: "", warning: "Nearly used up", exceeded: "Quota used up", paused: "Paused" };
const locale = navigator.language || undefined;
const day = (iso) => new Date(iso).toLocaleDateString(locale, { year: "numeric", month: "short", day: "numeric" });

/// An amount in minor units (cents) in its currency, with the currency's own number of decimals.
export function minorAmount(minor, currency) {
  try {
    const f = new Intl.NumberFormat(locale, { style: "currency", currency });
    return f.format(minor / 10 ** f.resolvedOptions().maximumFractionDigits);
  } catch {
    return `${number(minor / 100)} ${currency}`;
  }
}

/// The page, once the organisation is known and the role allows it.
export function Billing({ me, params }) {
  const org = params.org ? me.organizations.find((o) => o.organization_id === params.org) : me.organizations.find(canBill);
  if (!org || !canBill(org))
    return (
      <main class="page narrow">
        <Notice>Only owners and billing members can see billing.</Notice>
      </main>
    );
  return <BillingPage org={org} done={params.checkout === "done"} />;
}

function BillingPage({ org, done }) {
  const base = `/api/organizations/${org.organization_id}/billing`;
  const sub = useLoad(() => api("GET", base), [base]);
  const plans = useLoad(() => api("GET", "/api/billing/plans"), []);
  const records = useLoad(() => api("GET", `${base}/records`), [base]);
  return (
    <main class="page narrow">
      <h1>Billing: {org.name}</h1>
      {done && <Notice kind="success">Thanks: your plan changes as soon as the payment provider confirms it.</Notice>}
      <Loaded state={sub}>
        {(s) => (
          <>
            <Subscription s={s} />
            <Usage s={s} />
            <Plans s={s} plans={plans} base={base} />
          </>
        )}
      </Loaded>
      <section class="card" aria-labelledby="b-records">
        <h2 id="b-records">Invoices and payments</h2>
        <Loaded state={records} isEmpty={(d) => d.length === 0} empty="No invoices or payments yet.">
          {(list) => (
            <table class="rows">
              <thead>
                <tr>
                  <th scope="col">Date</th>
                  <th scope="col">Kind</th>
                  <th scope="col" class="num">Amount</th>
                  <th scope="col">Reference</th>
                </tr>
              </thead>
              <tbody>
                {list.map((r) => (
                  <tr>
                    <td>{day(r.occurred_at)}</td>
                    <td>{r.kind === "refund" ? "Refund" : r.kind === "payment" ? "Payment" : "Invoice"}</td>
                    <td class="num">{minorAmount(r.kind === "refund" ? -r.amount_minor : r.amount_minor, r.currency)}</td>
                    <td>
                      <code>{r.external_id}</code> <span class="muted">{PROVIDERS[r.provider] || r.provider}</span>
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
        </Loaded>
      </section>
      <Details base={base} />
    </main>
  );
}

function Subscription({ s }) {
  return (
    <section class="card" aria-labelledby="b-plan">
      <h2 id="b-plan">Plan</h2>
      <p class="plan-line">
        <strong class="plan-name">{s.plan.name}</strong> <span class={`badge ${s.status}`}>{STATUS[s.status] || s.status}</span>
        {s.cancel_at_period_end && <span class="badge cancelled">cancels at period end</span>}
      </p>
      <p>
        {s.status === "trialing" ? "Trial period" : "Current period"}: <time datetime={s.current_period_start}>{day(s.current_period_start)}</time> –{" "}
        <time datetime={s.current_period_end}>{day(s.current_period_end)}</time>
      </p>
      <p>Payment provider: {s.provider ? PROVIDERS[s.provider] || s.provider : "none yet"}</p>
      {s.quota.plan_id !== s.plan.id && (
        <p class="muted">
          While the subscription is {(STATUS[s.status] || s.status).toLowerCase()}, the limits of the {s.quota.plan_name} plan apply.
        </p>
      )}
    </section>
  );
}

function Usage({ s }) {
  const { quota: q, usage: u } = s;
  const text = `${number(u.events)} of ${number(q.monthly_events)} events (${number(q.percent)}%)`;
  return (
    <section class="card" aria-labelledby="b-usage">
      <h2 id="b-usage">Usage</h2>
      {s.notices.map((n) => (
        <Notice kind={n.threshold >= 100 ? "error" : "warning"}>
          {n.threshold >= 100
            ? `On ${day(n.created_at)} this period's ${number(n.quota)} events were used up (${number(n.events)}). Events are kept for ${q.grace_percent}% more, then refused until the next period or an upgrade.`
            : `On ${day(n.created_at)} ${n.threshold}% of this period's events were used (${number(n.events)} of ${number(n.quota)}).`}
        </Notice>
      ))}
      <p class="usage-head">
        <span id="b-events">Events this period</span>
        <span class="usage-text">
          {text}
          {STATE[q.state] && <strong class={`state ${q.state}`}> · {STATE[q.state]}</strong>}
        </span>
      </p>
      <div
        class={`meter ${q.state}`}
        role="progressbar"
        aria-labelledby="b-events"
        aria-valuemin="0"
        aria-valuemax={q.monthly_events}
        aria-valuenow={Math.min(u.events, q.monthly_events)}
        aria-valuetext={text}
      >
        <span style={{ width: `${Math.min(100, q.percent)}%` }} />
      </div>
      {q.state === "paused" && (
        <Notice>
          Events are not being stored: this period's quota and its {q.grace_percent}% grace are used up. {number(q.dropped_events)} events were refused so far. Choose a
          bigger plan, or wait for the next period ({day(s.current_period_end)}).
        </Notice>
      )}
      {q.state === "exceeded" && <Notice kind="warning">The quota is used up: events are still stored up to {100 + q.grace_percent}%, then refused.</Notice>}
      <ul class="plain limits">
        <li>
          <strong>{number(u.sites)}</strong> of {number(q.max_sites)} sites
        </li>
        <li>
          <strong>{number(u.members)}</strong> of {number(q.max_members)} members
        </li>
      </ul>
    </section>
  );
}

function Plans({ s, plans, base }) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState("");
  const go = async (method, path, body) => {
    setBusy(true);
    setError("");
    try {
      const link = await api(method, path, body);
      location.assign(link.url);
    } catch (e) {
      setError(e.message);
      setBusy(false);
    }
  };
  // A new checkout: on the trial (no provider yet) or after a cancellation (the same provider again).
  const canCheckout = s.status === "cancelled" || (s.status === "trialing" && !s.provider);
  const verb = s.status === "cancelled" ? "Choose" : "Upgrade";
  return (
    <section class="card" aria-labelledby="b-plans">
      <h2 id="b-plans">Plans</h2>
      {s.provider && (
        <p class="row-between">
          <span>Upgrade, downgrade, cancel or change the payment method at {PROVIDERS[s.provider] || s.provider}.</span>
          <button type="button" class="primary" disabled={busy} onClick={() => go("POST", `${base}/portal`)}>
            Manage billing
          </button>
        </p>
      )}
      <Loaded state={plans}>
        {(list) => {
          const offered = (p) => (canCheckout && !p.is_default ? p.providers.filter((pr) => !s.provider || pr === s.provider) : []);
          return (
            <>
              {canCheckout && !list.some((p) => p.providers.length) && <p class="muted">Payments are not configured in this deployment.</p>}
              <ul class="plain plan-grid">
                {list.map((p) => (
                  <li class={p.id === s.plan.id ? "plan current" : "plan"}>
                    <h3>
                      {p.name} {p.id === s.plan.id && <span class="muted">(current)</span>}
                    </h3>
                    <p>
                      {number(p.monthly_events)} events a month
                      <br />
                      {number(p.max_sites)} sites, {number(p.max_members)} members
                      <br />
                      Data kept {number(p.retention_days)} days
                    </p>
                    <div class="actions">
                      {offered(p).map((pr) => (
                        <button
                          type="button"
                          disabled={busy}
                          aria-label={`${verb} to ${p.name} with ${PROVIDERS[pr] || pr}`}
                          onClick={() => go("POST", `${base}/checkout`, { plan_id: p.id, provider: pr })}
                        >
                          {verb}
                          {offered(p).length > 1 && ` (${PROVIDERS[pr] || pr})`}
                        </button>
                      ))}
                    </div>
                  </li>
                ))}
              </ul>
            </>
          );
        }}
      </Loaded>
      {busy && <Spinner label="Opening the payment provider" />}
      <Notice>{error}</Notice>
    </section>
  );
}

function Details({ base }) {
  const [version, setVersion] = useState(0);
  const [saved, setSaved] = useState(null);
  const [ok, setOk] = useState(false);
  const state = useLoad(
    () =>
      api("GET", `${base}/details`).catch((e) => {
        if (e.status === 404) return null; // none yet: an empty form
        throw e;
      }),
    [base]
  );
  const save = async (form) => {
    setOk(false);
    const text = (name) => String(form.get(name) || "").trim();
    const answer = await api("PUT", `${base}/details`, {
      company: text("company") || null,
      vat_id: text("vat_id") || null,
      country: text("country").toUpperCase(),
      city: text("city"),
      postal_code: text("postal_code"),
      address_lines: ["line1", "line2", "line3"].map(text).filter(Boolean),
    });
    setSaved(answer);
    setOk(true);
    setVersion((v) => v + 1); // the form again, with the saved (normalised) values
  };
  if (state.loading && !state.data) return <Spinner />;
  const d = saved || state.data || {};
  const lines = d.address_lines || [];
  return (
    <section class="card" aria-labelledby="b-details">
      <h2 id="b-details">Billing details</h2>
      {state.error ? (
        <Notice>{state.error.message}</Notice>
      ) : (
        <Form key={version} action={save} submit="Save billing details">
          <Input label="Company (optional)" name="company" defaultValue={d.company || ""} autocomplete="organization" />
          <Input label="VAT id (optional)" name="vat_id" defaultValue={d.vat_id || ""} hint="With or without the country prefix, e.g. DE123456789." />
          <Input label="Address line 1" name="line1" defaultValue={lines[0] || ""} autocomplete="address-line1" required />
          <Input label="Address line 2" name="line2" defaultValue={lines[1] || ""} autocomplete="address-line2" />
          <Input label="Address line 3" name="line3" defaultValue={lines[2] || ""} autocomplete="address-line3" />
          <div class="inline">
            <Input label="Postal code" name="postal_code" defaultValue={d.postal_code || ""} autocomplete="postal-code" required />
            <Input label="City" name="city" defaultValue={d.city || ""} autocomplete="address-level2" required />
            <Input label="Country" name="country" defaultValue={d.country || ""} autocomplete="country" maxlength="2" required placeholder="DE" />
          </div>
          <small class="hint">The country as two letters (ISO 3166-1), e.g. DE.</small>
        </Form>
      )}
      {ok && <Notice kind="success">Billing details saved.</Notice>}
    </section>
  );
}
