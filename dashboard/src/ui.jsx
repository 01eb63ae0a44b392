// Small shared pieces: forms, notices, tabs, tables, panels with their
// loading / empty / error states.
import { useEffect, useRef, useState } from "preact/hooks";

let nextId = 0;
export const uid = (p = "f") => `${p}-${++nextId}`;

export function Field({ label, hint, children, id }) {
  return (
    <div class="field">
      <label for={id}>{label}</label>
      {children}
      {hint && <small class="hint">{hint}</small>}
    </div>
  );
}

export function Input({ label, hint, ...props }) {
  const id = useRef(props.id || uid()).current;
  return (
    <Field label={label} hint={hint} id={id}>
      <input id={id} {...props} />
    </Field>
  );
}

export function Select({ label, options, ...props }) {
  const id = useRef(props.id || uid()).current;
  return (
    <Field label={label} id={id}>
      <select id={id} {...props}>
        {options.map(([value, text]) => (
          <option value={value}>{text}</option>
        ))}
      </select>
    </Field>
  );
}

export function Notice({ kind = "error", children }) {
  if (!children) return null;
  return (
    <p class={`notice ${kind}`} role={kind === "error" ? "alert" : "status"}>
      {children}
    </p>
  );
}

export function Spinner({ label = "Loading" }) {
  return (
    <div class="spinner" role="status" aria-live="polite">
      <span class="dot" aria-hidden="true" />
      {label}…
    </div>
  );
}

/// A form whose submit runs `action`, shows its error, and disables itself meanwhile.
export function Form({ action, children, submit, class: cls = "stack" }) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState("");
  const onSubmit = async (e) => {
    e.preventDefault();
    setBusy(true);
    setError("");
    try {
      await action(new FormData(e.currentTarget), e.currentTarget);
    } catch (err) {
      setError(err.message || String(err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <form class={cls} onSubmit={onSubmit} aria-busy={busy}>
      {children}
      <Notice>{error}</Notice>
      {submit && (
        <button type="submit" class="primary" disabled={busy}>
          {busy ? "Working…" : submit}
        </button>
      )}
    </form>
  );
}

export function Tabs({ tabs, active, onChange, label }) {
  return (
    <div class="tabs" role="tablist" aria-label={label}>
      {tabs.map((t) => (
        <button
          type="button"
          role="tab"
          aria-selected={t.key === active}
          class={t.key === active ? "tab active" : "tab"}
          onClick={() => onChange(t.key)}
        >
          {t.label}
        </button>
      ))}
    </div>
  );
}

/// Runs `load` whenever `deps` change; gives {data, error, loading}.
export function useLoad(load, deps) {
  const [state, setState] = useState({ data: null, error: null, loading: true });
  useEffect(() => {
    let live = true;
    setState((s) => ({ ...s, loading: true, error: null }));
    load().then(
      (data) => live && setState({ data, error: null, loading: false }),
      (error) => live && setState({ data: null, error, loading: false })
    );
    return () => (live = false);
  }, deps);
  return state;
}

/// The three states every panel has, then its content.
export function Loaded({ state, empty, isEmpty, children }) {
  if (state.loading && !state.data) return <Spinner />;
  if (state.error) return <Notice>{state.error.message}</Notice>;
  if (isEmpty && isEmpty(state.data)) return <p class="empty">{empty || "Nothing here yet."}</p>;
  return children(state.data);
}

export function Copy({ text, label = "Copy" }) {
  const [done, setDone] = useState(false);
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(text);
    } catch {
      const t = document.createElement("textarea");
      t.value = text;
      document.body.appendChild(t);
      t.select();
      document.execCommand("copy");
      t.remove();
    }
    setDone(true);
    setTimeout(() => setDone(false), 1500);
  };
  return (
    <button type="button" onClick={copy} aria-live="polite">
      {done ? "Copied" : label}
    </button>
  );
}

export function Confirm({ label, question, onConfirm, danger = true }) {
  const click = () => {
    if (window.confirm(question)) onConfirm();
  };
  return (
    <button type="button" class={danger ? "danger" : ""} onClick={click}>
      {label}
    </button>
  );
}

/// Saves `data` as a pretty-printed JSON file the browser downloads.
export function downloadJson(data, filename) {
  const url = URL.createObjectURL(new Blob([JSON.stringify(data, null, 2)], { type: "application/json" }));
  const a = document.createElement("a");
  a.href = url;
  a.download = filename;
  a.click();
  URL.revokeObjectURL(url);
}
