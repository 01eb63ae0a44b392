// Settings: a site's (general, goals, share links, visitor requests, deletion), a team's
// (members, invitations, API keys, audit log) and the account's own
// (profile, password, two-factor sign-in, sessions, export, deletion).
import { useState } from "preact/hooks";
import { api } from "./api.js";
import { href, navigate } from "./router.js";
import { Confirm, Copy, Form, Input, Loaded, Notice, Select, downloadJson, useLoad } from "./ui.jsx";
import { MailSection } from "./mail.jsx";
import { Imports } from "./imports.jsx";
import { VisitorRequests } from "./visitor_requests.jsx";

const lines = (text) =>
  String(text || "")
    .split(/[\n,]/)
    .map((s) => s.trim())
    .filter(Boolean);

export function SiteSettings({ site, onChanged }) {
  const [saved, setSaved] = useState("");
  const [version, setVersion] = useState(0);
  const path = `/api/sites/${site.id}`;
  const goals = useLoad(() => api("GET", `${path}/goals`), [site.id, version]);
  const links = useLoad(() => api("GET", `${path}/shared-links`), [site.id, version]);
  const bump = () => setVersion((v) => v + 1);
  const [newLink, setNewLink] = useState(null);
  const save = async (form) => {
    await api("PATCH", path, {
      domain: form.get("domain"),
      name: form.get("name"),
      timezone: form.get("timezone"),
      retention_days: Number(form.get("retention_days")),
      allowed_hostnames: lines(form.get("allowed_hostnames")),
      excluded_paths: lines(form.get("excluded_paths")),
    });
    setSaved("Saved.");
    await onChanged();
  };
  const addGoal = async (form, el) => {
    const kind = form.get("kind");
    const body = { kind };
    if (kind === "pageview") body.page_path = form.get("target");
    else body.event_name = form.get("target");
    if (kind === "revenue") body.currency = String(form.get("currency") || "").toUpperCase();
    await api("POST", `${path}/goals`, body);
    el.reset();
    bump();
  };
  const addLink = async (form, el) => {
    const body = { name: form.get("name") || "Shared link" };
    if (form.get("password")) body.password = form.get("password");
    setNewLink(await api("POST", `${path}/shared-links`, body));
    el.reset();
    bump();
  };
  return (
    <main class="page narrow">
      <h1>
        <a href={href(`/site/${encodeURIComponent(site.domain)}`)} class="muted">{site.domain}</a> / Settings
      </h1>
      <section class="card" aria-labelledby="general">
        <h2 id="general">General</h2>
        <Form action={save} submit="Save">
          <Input label="Domain" name="domain" value={site.domain} required />
          <Input label="Name" name="name" value={site.name} />
          <Input label="Time zone" name="timezone" value={site.timezone} required />
          <Input label="Keep raw events for (days)" name="retention_days" type="number" min="1" max="3650" value={site.retention_days} hint="Daily summaries are kept." />
          <Input label="Allowed hostnames" name="allowed_hostnames" value={(site.allowed_hostnames || []).join(", ")} hint="Comma-separated; *.example.com for subdomains. Empty: any." />
          <Input label="Excluded paths" name="excluded_paths" value={(site.excluded_paths || []).join(", ")} hint="Comma-separated patterns like /admin/*." />
        </Form>
        <Notice kind="success">{saved}</Notice>
      </section>
      <MailSection site={site} />
      <section class="card" aria-labelledby="goals">
        <h2 id="goals">Goals</h2>
        <Loaded state={goals} isEmpty={(d) => d.length === 0} empty="No goals yet.">
          {(list) => (
            <ul class="plain">
              {list.map((g) => (
                <li class="row-between">
                  <span>
                    <strong>{g.display_name}</strong> <span class="muted">{g.kind}</span>
                  </span>
                  <Confirm label="Delete" question={`Delete the goal “${g.display_name}”?`} onConfirm={() => api("DELETE", `${path}/goals/${g.id}`).then(bump)} />
                </li>
              ))}
            </ul>
          )}
        </Loaded>
        <Form action={addGoal} submit="Add goal" class="inline">
          <Select label="Kind" name="kind" options={[["pageview", "Page visit"], ["event", "Custom event"], ["revenue", "Revenue event"]]} />
          <Input label="Path or event name" name="target" required placeholder="/thank-you or Signup" />
          <Input label="Currency (revenue)" name="currency" placeholder="EUR" maxlength="3" />
        </Form>
      </section>
      <section class="card" aria-labelledby="links">
        <h2 id="links">Public share links</h2>
        {newLink && (
          <Notice kind="success">
            Link made: <code>{`${location.origin}/#/shared/${newLink.slug}`}</code> <Copy text={`${location.origin}/#/shared/${newLink.slug}`} />
          </Notice>
        )}
        <Loaded state={links} isEmpty={(d) => d.length === 0} empty="No share links.">
          {(list) => (
            <ul class="plain">
              {list.map((l) => (
                <li class="row-between">
                  <span>
                    {l.name} {l.password_protected && <span class="muted">(password)</span>}
                  </span>
                  <Confirm label="Delete" question={`Delete the link “${l.name}”?`} onConfirm={() => api("DELETE", `${path}/shared-links/${l.id}`).then(bump)} />
                </li>
              ))}
            </ul>
          )}
        </Loaded>
        <Form action={addLink} submit="Create link" class="inline">
          <Input label="Name" name="name" placeholder="Investors" />
          <Input label="Password (optional)" name="password" type="password" autocomplete="new-password" />
        </Form>
      </section>
      {["owner", "admin"].includes(site.role) && <Imports site={site} />}
      {["owner", "admin"].includes(site.role) && <VisitorRequests site={site} />}
      <section class="card danger-zone" aria-labelledby="danger">
        <h2 id="danger">Delete this site</h2>
        <p>The site stops collecting at once; its data goes with the retention job.</p>
        <Confirm
          label="Delete site"
          question={`Delete ${site.domain}? This cannot be undone.`}
          onConfirm={() => api("DELETE", path).then(async () => (await onChanged(), navigate("/sites")))}
        />
      </section>
    </main>
  );
}

const ROLES = [["viewer", "Viewer"], ["editor", "Editor"], ["admin", "Admin"], ["billing", "Billing"], ["owner", "Owner"]];

export function Team({ org, me }) {
  const [version, setVersion] = useState(0);
  const bump = () => setVersion((v) => v + 1);
  const base = `/api/organizations/${org.organization_id}`;
  const admin = ["owner", "admin"].includes(org.role);
  const members = useLoad(() => api("GET", `${base}/members`), [org.organization_id, version]);
  const invites = useLoad(() => (admin ? api("GET", `${base}/invitations`) : Promise.resolve([])), [org.organization_id, version]);
  const audit = useLoad(() => (admin ? api("GET", `${base}/audit-log?limit=50`) : Promise.resolve(null)), [org.organization_id, version]);
  const [sent, setSent] = useState("");
  const invite = async (form, el) => {
    await api("POST", `${base}/invitations`, { email: form.get("email"), role: form.get("role") });
    setSent(`Invitation sent to ${form.get("email")}.`);
    el.reset();
    bump();
  };
  return (
    <main class="page narrow">
      <h1>Team: {org.name}</h1>
      <section class="card" aria-labelledby="members">
        <h2 id="members">Members</h2>
        <Loaded state={members}>
          {(list) => (
            <table class="rows">
              <thead>
                <tr>
                  <th scope="col">Member</th>
                  <th scope="col">Role</th>
                  {admin && <th scope="col"><span class="sr-only">Actions</span></th>}
                </tr>
              </thead>
              <tbody>
                {(list.members || list).map((m) => (
                  <tr>
                    <td>
                      {m.name || m.email} <span class="muted">{m.name ? m.email : ""}</span>
                    </td>
                    <td>
                      {admin && m.user_id !== me.id ? (
                        <select aria-label={`Role of ${m.email}`} value={m.role} onChange={(e) => api("PATCH", `${base}/members/${m.user_id}`, { role: e.currentTarget.value }).then(bump, (err) => alert(err.message))}>
                          {ROLES.map(([v, t]) => (
                            <option value={v}>{t}</option>
                          ))}
                        </select>
                      ) : (
                        m.role
                      )}
                    </td>
                    {admin && (
                      <td>{m.user_id !== me.id && <Confirm label="Remove" question={`Remove ${m.email} from the team?`} onConfirm={() => api("DELETE", `${base}/members/${m.user_id}`).then(bump, (err) => alert(err.message))} />}</td>
                    )}
                  </tr>
                ))}
              </tbody>
            </table>
          )}
        </Loaded>
      </section>
      {admin && (
        <section class="card" aria-labelledby="invite">
          <h2 id="invite">Invite someone</h2>
          <Form action={invite} submit="Send invitation" class="inline">
            <Input label="Email" name="email" type="email" required />
            <Select label="Role" name="role" options={ROLES.filter(([r]) => r !== "owner" || org.role === "owner")} />
          </Form>
          <Notice kind="success">{sent}</Notice>
          <Loaded state={invites} isEmpty={(d) => (d.invitations || d).length === 0} empty="No pending invitations.">
            {(d) => (
              <ul class="plain">
                {(d.invitations || d).map((i) => (
                  <li class="row-between">
                    <span>
                      {i.email} <span class="muted">{i.role}</span>
                    </span>
                    <Confirm label="Withdraw" question={`Withdraw the invitation to ${i.email}?`} onConfirm={() => api("DELETE", `${base}/invitations/${i.id}`).then(bump)} />
                  </li>
                ))}
              </ul>
            )}
          </Loaded>
        </section>
      )}
      {admin && (
        <section class="card" aria-labelledby="audit">
          <h2 id="audit">Audit log</h2>
          <Loaded state={audit} isEmpty={(d) => !d || d.entries.length === 0} empty="Nothing recorded yet.">
            {(d) => (
              <table class="rows">
                <thead>
                  <tr>
                    <th scope="col">When</th>
                    <th scope="col">Who</th>
                    <th scope="col">What</th>
                  </tr>
                </thead>
                <tbody>
                  {d.entries.map((e) => (
                    <tr>
                      <td>{new Date(e.created_at).toLocaleString()}</td>
                      <td>{e.actor_email || "—"}</td>
                      <td>
                        {e.action} <span class="muted">{e.target || ""}</span>
                      </td>
                    </tr>
                  ))}
                </tbody>
              </table>
            )}
          </Loaded>
        </section>
      )}
    </main>
  );
}

export function Account({ me, onChanged, onSignedOut }) {
  const [version, setVersion] = useState(0);
  const sessions = useLoad(() => api("GET", "/api/me/sessions"), [version]);
  const [notice, setNotice] = useState("");
  const [totp, setTotp] = useState(null);
  const profile = async (form) => {
    const body = { name: form.get("name") };
    if (form.get("email") !== me.email) {
      body.email = form.get("email");
      body.current_password = form.get("current_password");
    }
    await api("PATCH", "/api/me", body);
    setNotice(body.email ? "Saved. Confirm the new address from the mail we sent." : "Saved.");
    await onChanged();
  };
  const password = async (form, el) => {
    await api("POST", "/api/me/password", { current_password: form.get("current_password") || null, new_password: form.get("new_password") });
    el.reset();
    setNotice("Password changed; your other sessions were signed out.");
    setVersion((v) => v + 1);
  };
  const exportData = async () => {
    downloadJson(await api("GET", "/api/me/export"), "engagetrack-my-data.json");
  };
  const remove = async (form) => {
    await api("DELETE", "/api/me", { confirm_email: form.get("confirm_email"), password: form.get("password") || null });
    onSignedOut("Your account is deleted. It will be erased within 30 days.");
  };
  return (
    <main class="page narrow">
      <h1>Your account</h1>
      <Notice kind="success">{notice}</Notice>
      <section class="card" aria-labelledby="profile">
        <h2 id="profile">Profile</h2>
        <Form action={profile} submit="Save profile">
          <Input label="Name" name="name" value={me.name || ""} autocomplete="name" />
          <Input label="Email" name="email" type="email" value={me.email} autocomplete="email" required />
          <Input label="Current password (to change the email)" name="current_password" type="password" autocomplete="current-password" />
        </Form>
      </section>
      <section class="card" aria-labelledby="password">
        <h2 id="password">Password</h2>
        <Form action={password} submit="Change password">
          {me.has_password && <Input label="Current password" name="current_password" type="password" autocomplete="current-password" required />}
          <Input label="New password" name="new_password" type="password" autocomplete="new-password" minlength="10" required />
        </Form>
      </section>
      <section class="card" aria-labelledby="twofa">
        <h2 id="twofa">Two-factor sign-in</h2>
        {me.totp_enabled ? (
          <Form action={async (f) => (await api("POST", "/api/me/totp/disable", { current_password: f.get("current_password") || null, code: f.get("code") }), await onChanged())} submit="Turn off">
            <p>On. Sign-in asks for a code from your authenticator app.</p>
            <Input label="Current password" name="current_password" type="password" autocomplete="current-password" />
            <Input label="Code" name="code" inputmode="numeric" autocomplete="one-time-code" required />
          </Form>
        ) : totp ? (
          <Form action={async (f) => (await api("POST", "/api/me/totp/enable", { code: f.get("code") }), setTotp(null), await onChanged())} submit="Turn on">
            <p>
              Add this secret to your authenticator app: <code>{totp.secret}</code> <Copy text={totp.otpauth_url} label="Copy otpauth link" />
            </p>
            <Input label="Code from the app" name="code" inputmode="numeric" autocomplete="one-time-code" required />
          </Form>
        ) : (
          <button type="button" onClick={() => api("POST", "/api/me/totp/setup").then(setTotp, (e) => setNotice(e.message))}>
            Set up two-factor sign-in
          </button>
        )}
      </section>
      <section class="card" aria-labelledby="sessions">
        <h2 id="sessions">Active sessions</h2>
        <Loaded state={sessions}>
          {(list) => (
            <ul class="plain">
              {list.map((s) => (
                <li class="row-between">
                  <span>
                    {s.user_agent || "Unknown device"} <span class="muted">since {new Date(s.signed_in_at).toLocaleString()}</span> {s.current && <strong>(this one)</strong>}
                  </span>
                  {!s.current && <button type="button" onClick={() => api("DELETE", `/api/me/sessions/${s.id}`).then(() => setVersion((v) => v + 1))}>Sign out</button>}
                </li>
              ))}
            </ul>
          )}
        </Loaded>
      </section>
      <section class="card" aria-labelledby="data">
        <h2 id="data">Your data</h2>
        <button type="button" onClick={exportData}>
          Export my data (JSON)
        </button>
      </section>
      <section class="card danger-zone" aria-labelledby="delete">
        <h2 id="delete">Delete your account</h2>
        <Form action={remove} submit="Delete my account">
          <Input label="Type your email to confirm" name="confirm_email" type="email" required />
          {me.has_password && <Input label="Password" name="password" type="password" autocomplete="current-password" required />}
        </Form>
      </section>
    </main>
  );
}
