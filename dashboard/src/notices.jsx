// Notices to account holders (a change of the privacy policy, say): a banner
// under the top bar for each one not dismissed yet. A dismissal is recorded
// by the server, so a reload or another browser does not bring it back.
import { useEffect, useState } from "preact/hooks";
import { api } from "./api.js";
import { Notice } from "./ui.jsx";

export function NoticeBanners() {
  const [notices, setNotices] = useState([]);
  const [error, setError] = useState(null);
  useEffect(() => {
    // A banner that failed to load is not worth an error on every page.
    api("GET", "/api/notices").then((d) => setNotices(d.notices), () => {});
  }, []);
  const dismiss = async (id) => {
    try {
      await api("POST", `/api/notices/${id}/dismiss`);
      setError(null);
      setNotices((all) => all.filter((n) => n.id !== id));
    } catch (e) {
      setError(e.message);
    }
  };
  if (!notices.length) return null;
  return (
    <section class="notices" aria-label="Notices">
      {notices.map((n) => (
        <div class="notice-banner" role="region" aria-labelledby={`notice-${n.id}`} key={n.id}>
          <div>
            <strong id={`notice-${n.id}`}>{n.title}</strong>
            {n.body.split(/\n\s*\n/).map((p) => (
              <p>{p}</p>
            ))}
            {n.link && (
              <a href={n.link} target="_blank" rel="noopener noreferrer">
                Read more
              </a>
            )}
          </div>
          <button type="button" class="ghost" onClick={() => dismiss(n.id)} aria-label={`Dismiss: ${n.title}`}>
            Dismiss
          </button>
        </div>
      ))}
      <Notice>{error}</Notice>
    </section>
  );
}
