// Signing in and everything around it: sign-up, the mailed verification
// and reset links, invitations, and the return from Google or GitHub.
import { useEffect, useState } from "preact/hooks";
import { api, publicApi, refreshSession, setSession } from "./api.js";
import { href, navigate } from "./router.js";
import { Form, Input, Notice, Spinner, useLoad } from "./ui.jsx";

function Card({ title, children }) {
  return (
    <main class="auth">
      <div class="card">
        <h1>
          <span class="logo" aria-hidden="true">◆</span> {title}
        </h1>
        {children}
      </div>
    </main>
  );
}

export function SignIn({ onSignedIn, params }) {
  const providers = useLoad(() => publicApi("GET", "/api/auth/providers"), []);
  const [needsCode, setNeedsCode] = useState(false);
  const action = async (form) => {
    const body = { email: form.get("email"), password: form.get("password") };
    if (form.get("totp_code")) body.totp_code = form.get("totp_code");
    try {
      setSession(await publicApi("POST", "/api/auth/login", body));
    } catch (e) {
      if (e.message.includes("two-factor code is required")) {
        setNeedsCode(true);
        throw new Error("Enter the 6-digit code from your authenticator app.");
      }
      throw e;
    }
    await onSignedIn(params.next);
  };
  return (
    <Card title="Sign in to EngageTrack">
      <Notice kind="info">{params.notice}</Notice>
      <Form action={action} submit="Sign in">
        <Input label="Email" name="email" type="email" autocomplete="username" required autofocus />
        <Input label="Password" name="password" type="password" autocomplete="current-password" required />
        {needsCode && <Input label="Two-factor code" name="totp_code" inputmode="numeric" autocomplete="one-time-code" pattern="[0-9]{6}" required />}
      </Form>
      {providers.data && providers.data.providers.length > 0 && (
        <div class="oauth">
          {providers.data.providers.map((p) => (
            <a class="button" href={`/api/auth/oauth/${p}/start`}>
              Sign in with {p === "github" ? "GitHub" : "Google"}
            </a>
          ))}
        </div>
      )}
      <p class="links">
        <a href={href("/signup")}>Create an account</a> · <a href={href("/forgot")}>Forgot your password?</a>
      </p>
    </Card>
  );
}

export function SignUp() {
  const [sent, setSent] = useState(null);
  const action = async (form) => {
    const body = { email: form.get("email"), password: form.get("password") };
    if (form.get("name")) body.name = form.get("name");
    const r = await publicApi("POST", "/api/auth/signup", body);
    setSent(r.email);
  };
  if (sent)
    return (
      <Card title="Check your inbox">
        <p>
          We sent a confirmation link to <strong>{sent}</strong>. Follow it, then sign in.
        </p>
        <p class="links">
          <a href={href("/login")}>Back to sign in</a>
        </p>
      </Card>
    );
  return (
    <Card title="Create your account">
      <Form action={action} submit="Create account">
        <Input label="Name" name="name" autocomplete="name" />
        <Input label="Email" name="email" type="email" autocomplete="email" required />
        <Input label="Password" name="password" type="password" autocomplete="new-password" minlength="10" required hint="At least 10 characters and hard to guess; a few unrelated words work well." />
      </Form>
      <p class="links">
        Have an account? <a href={href("/login")}>Sign in</a>
      </p>
    </Card>
  );
}

export function Verify({ params }) {
  const state = useLoad(() => publicApi("POST", "/api/auth/verify-email", { token: params.token || "" }), [params.token]);
  return (
    <Card title="Confirming your email">
      {state.loading ? (
        <Spinner />
      ) : state.error ? (
        <Notice>{state.error.message}</Notice>
      ) : (
        <Notice kind="success">Your email address is confirmed.</Notice>
      )}
      <p class="links">
        <a href={href("/login")}>Sign in</a>
      </p>
    </Card>
  );
}

export function Forgot() {
  const [sent, setSent] = useState(false);
  const action = async (form) => {
    await publicApi("POST", "/api/auth/password-reset", { email: form.get("email") });
    setSent(true);
  };
  return (
    <Card title="Reset your password">
      {sent ? (
        <Notice kind="success">If an account uses that address, a reset link is on its way. It works once, for one hour.</Notice>
      ) : (
        <Form action={action} submit="Send reset link">
          <Input label="Email" name="email" type="email" autocomplete="email" required />
        </Form>
      )}
      <p class="links">
        <a href={href("/login")}>Back to sign in</a>
      </p>
    </Card>
  );
}

export function Reset({ params }) {
  const action = async (form) => {
    await publicApi("POST", "/api/auth/password-reset/confirm", { token: params.token || "", password: form.get("password") });
    navigate("/login", { notice: "Password changed. Sign in with the new one." });
  };
  return (
    <Card title="Choose a new password">
      <Form action={action} submit="Set password">
        <Input label="New password" name="password" type="password" autocomplete="new-password" minlength="10" required />
      </Form>
    </Card>
  );
}

export function AcceptInvite({ params, signedIn, onSignedIn }) {
  const [done, setDone] = useState(null);
  const [error, setError] = useState("");
  useEffect(() => {
    if (!signedIn) return;
    api("POST", "/api/invitations/accept", { token: params.token || "" }).then(setDone, (e) => setError(e.message));
  }, [signedIn, params.token]);
  if (!signedIn)
    return (
      <Card title="You are invited">
        <p>Sign in (or create an account with the invited address) to join the team.</p>
        <p class="links">
          <a href={href("/login", { next: `/accept-invite?token=${params.token || ""}` })}>Sign in</a> ·{" "}
          <a href={href("/signup")}>Create an account</a>
        </p>
      </Card>
    );
  return (
    <Card title="Joining the team">
      {error ? <Notice>{error}</Notice> : done ? <Notice kind="success">You joined the team.</Notice> : <Spinner />}
      {(done || error) && (
        <p class="links">
          <a href={href("/sites")} onClick={() => onSignedIn()}>
            Go to your sites
          </a>
        </p>
      )}
    </Card>
  );
}

/// Back from Google or GitHub: the refresh cookie is set; trade it for a session.
export function SignedIn({ onSignedIn }) {
  const [error, setError] = useState("");
  useEffect(() => {
    refreshSession().then((ok) => (ok ? onSignedIn() : setError("The sign-in did not complete. Try again.")));
  }, []);
  return <Card title="Signing you in">{error ? <Notice>{error}</Notice> : <Spinner />}</Card>;
}
