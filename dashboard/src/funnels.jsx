// The Funnels panel: the user builds 2 to 8 ordered steps (page patterns or
// the site's goals) and sees, per step, the visits that got that far, the
// conversion from the first step and the drop-off from the one before, for
// the dashboard's date range and filters (POST /api/v2/funnel).
import { useState } from "preact/hooks";
import { api } from "./api.js";
import { number, percent } from "./format.js";
import { Notice, useLoad } from "./ui.jsx";

const MAX_STEPS = 8;
const blank = () => ({ kind: "page", value: "" });
const asStep = (s) => (s.kind === "goal" ? { goal: s.value } : { page: s.value });

function StepEditor({ i, step, goals, onChange, onRemove, removable }) {
  const n = i + 1;
  return (
    <li class="funnel-step-edit">
      <label>
        <span class="sr-only">Step {n} kind</span>
        <select aria-label={`Step ${n} kind`} value={step.kind} onChange={(e) => onChange({ kind: e.currentTarget.value, value: "" })}>
          <option value="page">Page</option>
          <option value="goal" disabled={goals.length === 0}>
            Goal
          </option>
        </select>
      </label>
      {step.kind === "goal" ? (
        <label>
          <span class="sr-only">Step {n} goal</span>
          <select aria-label={`Step ${n} goal`} value={step.value} onChange={(e) => onChange({ ...step, value: e.currentTarget.value })}>
            <option value="">Pick a goal</option>
            {goals.map((g) => (
              <option value={g.display_name}>{g.display_name}</option>
            ))}
          </select>
        </label>
      ) : (
        <label>
          <span class="sr-only">Step {n} page</span>
          <input
            aria-label={`Step ${n} page`}
            placeholder="/pricing*"
            value={step.value}
            onInput={(e) => onChange({ ...step, value: e.currentTarget.value })}
          />
        </label>
      )}
      {removable && (
        <button type="button" class="link" aria-label={`Remove step ${n}`} onClick={onRemove}>
          ×
        </button>
      )}
    </li>
  );
}

function Bars({ data }) {
  return (
    <ol class="funnel-bars" aria-label="Funnel steps">
      {data.steps.map((s, i) => (
        <li class="funnel-bar" aria-label={`Step ${i + 1}: ${s.label}`}>
          <div class="funnel-label">
            <strong>
              {i + 1}. {s.label}
            </strong>
            <span class="num">
              {number(s.visits)} visits · {number(s.visitors)} visitors · {percent(s.conversion_rate)}
            </span>
          </div>
          <div class="funnel-track" aria-hidden="true">
            <span class="bar" style={`width:${Math.max(0, Math.min(100, s.conversion_rate)).toFixed(1)}%`} />
          </div>
          {i > 0 && (
            <p class="muted funnel-drop">
              Drop-off {number(s.dropoff)} ({percent(s.dropoff_rate)}); {percent(s.conversion_rate_step)} of step {i}
            </p>
          )}
        </li>
      ))}
    </ol>
  );
}

export function Funnels({ site, base, dep }) {
  const goals = useLoad(() => api("GET", `/api/sites/${encodeURIComponent(site.domain)}/goals`).catch(() => []), [site.domain]);
  const [steps, setSteps] = useState([{ kind: "page", value: "/" }, blank()]);
  // The steps last shown: the funnel follows the range and filters from then on.
  const [asked, setAsked] = useState(null);
  const state = useLoad(() => (asked ? api("POST", "/api/v2/funnel", { ...base, steps: asked }) : Promise.resolve(null)), [dep, JSON.stringify(asked)]);
  const ready = steps.every((s) => s.value.trim() !== "");
  const update = (i, s) => setSteps(steps.map((x, j) => (j === i ? s : x)));
  const goalList = Array.isArray(goals.data) ? goals.data : [];
  return (
    <section class="card panel funnels" aria-label="Funnels">
      <div class="panel-head">
        <h2>Funnels</h2>
      </div>
      <form
        class="funnel-form"
        onSubmit={(e) => {
          e.preventDefault();
          if (ready) setAsked(steps.map(asStep));
        }}
      >
        <ol class="plain">
          {steps.map((s, i) => (
            <StepEditor
              i={i}
              step={s}
              goals={goalList}
              onChange={(x) => update(i, x)}
              onRemove={() => setSteps(steps.filter((_, j) => j !== i))}
              removable={steps.length > 2}
            />
          ))}
        </ol>
        <div class="funnel-actions">
          <button type="button" disabled={steps.length >= MAX_STEPS} onClick={() => setSteps([...steps, blank()])}>
            Add step
          </button>
          <button type="submit" class="primary" disabled={!ready}>
            Show funnel
          </button>
        </div>
      </form>
      {asked && state.loading && !state.data && <p class="empty">Loading…</p>}
      {asked && state.error && <Notice>{state.error.message}</Notice>}
      {asked && state.data && !state.error && (
        <>
          <p class="funnel-total">
            Converted: <strong>{percent(state.data.conversion_rate)}</strong> of visits that began the funnel
          </p>
          <Bars data={state.data} />
          <p class="muted">Raw events only: imported data has no order of events.</p>
        </>
      )}
      {!asked && <p class="empty">Build the steps, then Show funnel.</p>}
    </section>
  );
}
