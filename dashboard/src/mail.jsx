// Mail: the signed-in member's own reports and spike alerts for one site,
// and their timezone (GET/PUT /api/sites/{id}/mail-settings). Any role that
// may read the site's stats may subscribe, so viewers reach it too.
import { useState } from "preact/hooks";
import { api } from "./api.js";
import { href } from "./router.js";
import { Form, Input, Loaded, Notice, useLoad } from "./ui.jsx";

export function MailSection({ site }) {
  const path = `/api/sites/${site.id}/mail-settings`;
  const [version, setVersion] = useState(0);
  const [saved, setSaved] = useState("");
  const settings = useLoad(() => api("GET", path), [site.id, version]);
  const save = async (form) => {
    const threshold = String(form.get("spike_threshold") || "").trim();
    const timezone = String(form.get("timezone") || "").trim();
    await api("PUT", path, {
      weekly: form.get("weekly") === "on",
      monthly: form.get("monthly") === "on",
      spike_threshold: threshold === "" ? null : Number(threshold),
      timezone: timezone === "" ? null : timezone,
    });
    setSaved("Saved.");
    setVersion((v) => v + 1);
  };
  return (
    <section class="card" aria-labelledby="mail">
      <h2 id="mail">Mail</h2>
      <Loaded state={settings}>
        {(s) => (
          <Form action={save} submit="Save mail settings">
            <label class="check">
              <input type="checkbox" name="weekly" checked={s.weekly} /> Weekly report (last Monday to Sunday), Monday 07:00
            </label>
            <label class="check">
              <input type="checkbox" name="monthly" checked={s.monthly} /> Monthly report (last month), on the 1st at 07:00
            </label>
            <Input
              label="Traffic-spike alert at (current visitors)"
              name="spike_threshold"
              type="number"
              min="1"
              max="1000000"
              value={s.spike_threshold ?? ""}
              hint="At most one alert an hour. Empty: no alerts."
            />
            <Input label="Your time zone" name="timezone" value={s.timezone ?? ""} placeholder={site.timezone} hint={`For all your reports. Empty: each site's own (now ${s.effective_timezone}).`} />
          </Form>
        )}
      </Loaded>
      <Notice kind="success">{saved}</Notice>
    </section>
  );
}

/// The Mail section on a page of its own, for roles without the site's settings (viewers).
export function MailPage({ site }) {
  return (
    <main class="page narrow">
      <h1>
        <a href={href(`/site/${encodeURIComponent(site.domain)}`)} class="muted">{site.domain}</a> / Mail
      </h1>
      <MailSection site={site} />
    </main>
  );
}
