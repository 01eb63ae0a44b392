// The app shell: boots the session from the refresh cookie, loads who you
// are, and routes the URL hash to a page.
import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import { ApiError, api, refreshSession, sharedApi, signOut } from "./api.js";
import { AcceptInvite, Forgot, Reset, SignIn, SignUp, SignedIn, Verify } from "./auth.jsx";
import { Billing, canBill } from "./billing.jsx";
import { Dashboard, Realtime } from "./dashboard.jsx";
import { NoticeBanners } from "./notices.jsx";
import { adoptEntryPath, href, navigate, useRoute } from "./router.js";
import { Account, SiteSettings, Team } from "./settings.jsx";
import { MailPage } from "./mail.jsx";
import { AddSite, Sites } from "./sites.jsx";
import { Form, Input, Notice, Spinner, useLoad } from "./ui.jsx";

const PUBLIC = ["/login", "/signup", "/verify", "/forgot", "/reset", "/signed-in"];

function useTheme() {
  const [theme, setTheme] = useState(() => localStorage.getItem("et-theme") || "auto");
  useEffect(() => {
    document.documentElement.dataset.theme = theme;
    localStorage.setItem("et-theme", theme);
  }, [theme]);
  return [theme, setTheme];
}

function Nav({ me, theme, setTheme, onSignOut }) {
  const next = { auto: "dark", dark: "light", light: "auto" };
  return (
    <header class="topbar">
      <a class="brand" href={href("/sites")}>
        <span class="logo" aria-hidden="true">◆</span> EngageTrack
      </a>
      <nav aria-label="Main">
        <a href={href("/sites")}>Sites</a>
        {me.organizations.map((o) => {
          const many = me.organizations.length > 1;
          return (
            <>
              <a href={href(`/team/${o.organization_id}`)}>{many ? o.name : "Team"}</a>
              {canBill(o) && <a href={href("/billing", { org: o.organization_id })}>{many ? `${o.name} billing` : "Billing"}</a>}
            </>
          );
        })}
        <a href={href("/account")}>Account</a>
      </nav>
      <button type="button" class="ghost" onClick={() => setTheme(next[theme])} aria-label={`Theme: ${theme}. Switch theme`}>
        {theme === "dark" ? "☾" : theme === "light" ? "☀" : "◐"}
      </button>
      <button type="button" class="ghost" onClick={onSignOut}>
        Sign out
      </button>
    </header>
  );
}

/// A site from the list the user can see, by domain (or id).
function useSite(ref, version) {
  return useLoad(async () => {
    const sites = await api("GET", "/api/sites");
    const site = sites.find((s) => s.domain === ref || s.id === ref);
    if (!site) throw new ApiError(404, "No such site, or you cannot see it.");
    return site;
  }, [ref, version]);
}

function SitePage({ domain, sub, params }) {
  const [version, setVersion] = useState(0);
  const site = useSite(domain, version);
  if (site.loading && !site.data) return <Spinner />;
  if (site.error) return <Notice>{site.error.message}</Notice>;
  if (sub === "realtime") return <Realtime site={site.data} />;
  if (sub === "mail") {
    if (site.data.role === "billing") return <Notice>Your role cannot read this site's stats, so it gets no reports.</Notice>;
    return <MailPage site={site.data} />;
  }
  if (sub === "settings") {
    if (["viewer", "billing"].includes(site.data.role)) return <Notice>Your role cannot change this site's settings.</Notice>;
    return <SiteSettings site={site.data} onChanged={async () => setVersion((v) => v + 1)} />;
  }
  return <Dashboard site={site.data} params={params} />;
}

function SharedPage({ slug, params }) {
  const [password, setPassword] = useState(sessionStorage.getItem(`et-share-${slug}`) || "");
  const info = useLoad(() => sharedApi("GET", `/api/shared/${encodeURIComponent(slug)}`, password), [slug, password]);
  if (info.loading && !info.data) return <Spinner />;
  if (info.error && info.error.status === 401)
    return (
      <main class="auth">
        <div class="card">
          <h1>This dashboard is protected</h1>
          <Form
            action={async (f) => {
              sessionStorage.setItem(`et-share-${slug}`, f.get("password"));
              setPassword(f.get("password"));
            }}
            submit="Open"
          >
            <Input label="Password" name="password" type="password" required autofocus />
            {password && <Notice>That password is not right.</Notice>}
          </Form>
        </div>
      </main>
    );
  if (info.error) return <Notice>{info.error.message}</Notice>;
  const q = (body) => sharedApi("POST", `/api/shared/${encodeURIComponent(slug)}/query`, password, body);
  return <Dashboard site={info.data} params={params} q={q} basePath={`/shared/${slug}`} shared />;
}

function App() {
  const route = useRoute();
  const [theme, setTheme] = useTheme();
  const [me, setMe] = useState(undefined);
  const loadMe = async () => {
    try {
      setMe(await api("GET", "/api/me"));
      return true;
    } catch {
      setMe(null);
      return false;
    }
  };
  useEffect(() => {
    refreshSession().then((ok) => (ok ? loadMe() : setMe(null)));
  }, []);
  const onSignedIn = async (next) => {
    await loadMe();
    if (next) location.hash = next;
    else navigate("/sites");
  };
  const onSignOut = async (notice) => {
    await signOut();
    setMe(null);
    navigate("/login", typeof notice === "string" ? { notice } : {});
  };
  const { path, params } = route;
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);

  if (parts[0] === "shared" && parts[1]) return <SharedPage slug={parts[1]} params={params} />;
  if (me === undefined) return <Spinner label="Loading EngageTrack" />;
  if (path === "/verify") return <Verify params={params} />;
  if (path === "/reset") return <Reset params={params} />;
  if (path === "/forgot") return <Forgot />;
  if (path === "/signup") return <SignUp />;
  if (path === "/signed-in") return <SignedIn onSignedIn={onSignedIn} />;
  if (path === "/accept-invite") return <AcceptInvite params={params} signedIn={!!me} onSignedIn={loadMe} />;
  if (!me || path === "/login") {
    if (me && path === "/login") {
      navigate("/sites", {}, { replace: true });
      return null;
    }
    const nextPath = PUBLIC.includes(path) || path === "/" ? undefined : location.hash.slice(1);
    return <SignIn onSignedIn={onSignedIn} params={{ ...params, next: params.next || nextPath }} />;
  }
  let page;
  if (parts[0] === "site" && parts[1]) page = <SitePage domain={parts[1]} sub={parts[2]} params={params} />;
  else if (path === "/sites/new") page = <AddSite me={me} />;
  else if (parts[0] === "team" && parts[1]) {
    const org = me.organizations.find((o) => o.organization_id === parts[1]);
    page = org ? <Team org={org} me={me} /> : <Notice>No such team.</Notice>;
  } else if (path === "/billing") page = <Billing me={me} params={params} />;
  else if (path === "/account") page = <Account me={me} onChanged={loadMe} onSignedOut={onSignOut} />;
  else page = <Sites me={me} />;
  return (
    <>
      <a class="skip" href="#main-content">
        Skip to content
      </a>
      <Nav me={me} theme={theme} setTheme={setTheme} onSignOut={() => onSignOut()} />
      <NoticeBanners key={me.id} />
      <div id="main-content">{page}</div>
    </>
  );
}

adoptEntryPath();
const root = document.getElementById("app");
root.textContent = ""; // the "Loading…" shown before the script ran
render(<App />, root);
