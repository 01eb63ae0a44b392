// Site settings → Visitor requests (owners and admins): answer one visitor's
// access or erasure request by identify() user id, identify() email or
// storage-mode visitor id. Memory-mode visitors cannot be named at all; the
// panel says so rather than offering an IP address field.
import { useState } from "preact/hooks";
import { api } from "./api.js";
import { Input, Notice, Select, downloadJson } from "./ui.jsx";

const KINDS = [
  ["user_id", "User id (identify)"],
  ["email", "Email (identify)"],
  ["visitor_id", "Visitor id (storage mode)"],
];

const HINTS = {
  user_id: "The id your site passed to identify(). Finds those events and every event of the same sessions.",
  email: "The email your site passed to identify(); case and spaces do not matter.",
  visitor_id: "The id the tracking script keeps on the visitor's device in storage mode (localStorage item et_vid).",
};

const describe = (r) =>
  r.events === 0
    ? "No events match."
    : `${r.events} events in ${r.sessions} sessions on ${r.days} days, ${new Date(r.first_seen).toLocaleString()} – ${new Date(r.last_seen).toLocaleString()}.`;

export function VisitorRequests({ site }) {
  const [kind, setKind] = useState("user_id");
  const [value, setValue] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState("");
  const [result, setResult] = useState("");
  const path = `/api/sites/${site.id}/visitor-requests`;
  const run = (action) => async () => {
    setBusy(true);
    setError("");
    setResult("");
    try {
      const body = { [kind]: value };
      if (action === "find") setResult(describe(await api("POST", `${path}/find`, body)));
      if (action === "export") {
        const data = await api("POST", `${path}/export`, body);
        downloadJson(data, `engagetrack-visitor-${site.domain}-${data.exported_at.slice(0, 10)}.json`);
        setResult(`Exported ${data.count} events.`);
      }
      if (action === "erase") {
        const found = await api("POST", `${path}/find`, body);
        if (found.events === 0) return setResult("No events match; nothing to erase.");
        if (!window.confirm(`Erase ${found.events} events of this visitor from ${site.domain}? Their part of the statistics goes too. This cannot be undone.`)) return;
        const erased = await api("POST", `${path}/erase`, body);
        setResult(`Erased ${erased.events} events; statistics of ${erased.rerolled_days.length} days rebuilt.`);
      }
    } catch (err) {
      setError(err.message || String(err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <section class="card" aria-labelledby="visitor-requests">
      <h2 id="visitor-requests">Visitor requests</h2>
      <p class="muted">
        Answer a visitor's request to see or erase their data. Visitors tracked in memory mode (the default) cannot be found: nothing stored
        identifies them, not even an IP address.
      </p>
      <form class="stack" onSubmit={(e) => (e.preventDefault(), run("find")())} aria-busy={busy}>
        <Select label="Find the visitor by" name="kind" value={kind} options={KINDS} onChange={(e) => setKind(e.currentTarget.value)} />
        <Input label="Value" name="value" required value={value} hint={HINTS[kind]} onInput={(e) => setValue(e.currentTarget.value)} />
        <Notice>{error}</Notice>
        <Notice kind="success">{result}</Notice>
        <div class="buttons">
          <button type="submit" class="primary" disabled={busy || !value}>Find</button>
          <button type="button" disabled={busy || !value} onClick={run("export")}>Export (JSON)</button>
          <button type="button" class="danger" disabled={busy || !value} onClick={run("erase")}>Erase…</button>
        </div>
      </form>
    </section>
  );
}
