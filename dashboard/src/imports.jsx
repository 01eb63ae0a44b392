// Site settings → Imports (owners and admins): bring in data from Plausible,
// Google Analytics 4 or Umami. The file is the request body; while it goes
// in, the list is polled so the running import's progress bar moves. The
// imported data shows on the dashboard with "Include imported data" on.
import { useEffect, useState } from "preact/hooks";
import { api } from "./api.js";
import { Confirm, Input, Loaded, Notice, Select, useLoad } from "./ui.jsx";

const SOURCES = [
  ["plausible", "Plausible (CSV export zip)"],
  ["ga4", "Google Analytics 4 (Data API report JSON)"],
  ["ga4-bigquery", "Google Analytics 4 (BigQuery export, NDJSON)"],
  ["umami", "Umami (website_event CSV)"],
  ["umami-db", "Umami (read its PostgreSQL database)"],
];

const HINTS = {
  plausible: "Plausible: Site settings → Imports & Exports → Export to CSV. Upload the zip as it is.",
  ga4: "One runReport or batchRunReports answer per file; see the README for the reports and their dimensions.",
  "ga4-bigquery": "Export the events_YYYYMMDD tables as newline-delimited JSON.",
  umami: "Umami Cloud's data export of website_event rows. Umami's report export (x,y files) cannot be imported exactly and is refused.",
  "umami-db": "A read-only connection URL to Umami's PostgreSQL and the website's id in Umami; the range is needed.",
};

function Progress({ imp }) {
  const total = Math.max(imp.rows_total, 1);
  const done = imp.status === "done" ? total : imp.rows_done;
  return (
    <progress max={total} value={done} aria-label={`Import of ${imp.origin}`}>
      {Math.round((100 * done) / total)}%
    </progress>
  );
}

export function Imports({ site }) {
  const path = `/api/sites/${site.id}/imports`;
  const [version, setVersion] = useState(0);
  const bump = () => setVersion((v) => v + 1);
  const list = useLoad(() => api("GET", path), [path, version]);
  const [source, setSource] = useState("plausible");
  const [file, setFile] = useState(null);
  const [from, setFrom] = useState("");
  const [to, setTo] = useState("");
  const [url, setUrl] = useState("");
  const [website, setWebsite] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState("");
  const [result, setResult] = useState("");
  // Poll while an import of ours runs: its progress is written outside its transaction.
  useEffect(() => {
    if (!busy) return undefined;
    const timer = setInterval(bump, 1000);
    return () => clearInterval(timer);
  }, [busy]);
  const submit = async (e) => {
    e.preventDefault();
    setBusy(true);
    setError("");
    setResult("");
    try {
      const params = new URLSearchParams({ source });
      if (from && to) {
        params.set("from", from);
        params.set("to", to);
      }
      let body;
      if (source === "umami-db") body = { database_url: url, website_id: website };
      else {
        params.set("file_name", file.name);
        body = file;
      }
      const done = await api("POST", `${path}?${params}`, body);
      setResult(`Imported ${done.rows_done} rows for ${done.range_start} – ${done.range_end}.${done.warnings.length ? " " + done.warnings.join("; ") : ""}`);
    } catch (err) {
      setError(err.message || String(err));
    } finally {
      setBusy(false);
      bump();
    }
  };
  const ready = source === "umami-db" ? url && website && from && to : file;
  return (
    <section class="card" aria-labelledby="imports">
      <h2 id="imports">Imports</h2>
      <p class="muted">
        Bring in the history from another tool. Imported data is kept apart from what EngageTrack collects and shows on the dashboard when
        “Include imported data” is on. Importing the same range again replaces it.
      </p>
      <form class="stack" onSubmit={submit} aria-busy={busy}>
        <Select label="Source" name="source" value={source} options={SOURCES} onChange={(e) => setSource(e.currentTarget.value)} />
        {source === "umami-db" ? (
          <>
            <Input label="Database URL" name="database_url" required value={url} hint={HINTS[source]} onInput={(e) => setUrl(e.currentTarget.value)} />
            <Input label="Umami website id" name="website_id" required value={website} onInput={(e) => setWebsite(e.currentTarget.value)} />
          </>
        ) : (
          <Input label="Export file" name="file" type="file" required hint={HINTS[source]} onChange={(e) => setFile(e.currentTarget.files[0] || null)} />
        )}
        <div class="row-between">
          <Input label="From (optional)" name="from" type="date" value={from} onInput={(e) => setFrom(e.currentTarget.value)} />
          <Input label="To (optional)" name="to" type="date" value={to} onInput={(e) => setTo(e.currentTarget.value)} />
        </div>
        <Notice>{error}</Notice>
        <Notice kind="success">{result}</Notice>
        <div class="buttons">
          <button type="submit" class="primary" disabled={busy || !ready}>{busy ? "Importing…" : "Import"}</button>
        </div>
      </form>
      <Loaded state={list} isEmpty={(d) => d.length === 0} empty="No imports yet.">
        {(imports) => (
          <table class="rows" aria-label="Imports">
            <thead>
              <tr>
                <th scope="col">Source</th>
                <th scope="col">Range</th>
                <th scope="col">Status</th>
                <th scope="col" class="num">Rows</th>
                <th scope="col"><span class="sr-only">Actions</span></th>
              </tr>
            </thead>
            <tbody>
              {imports.map((i) => (
                <tr>
                  <td>
                    {i.source} <span class="muted">{i.origin}</span>
                  </td>
                  <td>
                    {i.range_start} – {i.range_end}
                  </td>
                  <td>
                    {i.status === "running" ? <Progress imp={i} /> : i.status}
                    {i.error && <div class="error-text">{i.error}</div>}
                  </td>
                  <td class="num">{i.rows_done}</td>
                  <td>
                    <Confirm label="Delete" question={`Delete this import (${i.range_start} – ${i.range_end}) and all its data?`} onConfirm={() => api("DELETE", `${path}/${i.id}`).then(bump)} />
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </Loaded>
    </section>
  );
}
