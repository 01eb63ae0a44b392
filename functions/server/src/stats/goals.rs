//! A site's goals, as the stats engine and the rollup job match them.

use chrono::{DateTime, Utc};
use shared::SiteId;
use uuid::Uuid;

use super::sessions::INTERACTIVE;

#[derive(Debug, Clone)]
pub struct Goal {
    pub id: Uuid,
    /// pageview | event | revenue
    pub kind: String,
    pub display_name: String,
    /// The page pattern as a SQL `LIKE` pattern (`*` became `%`).
    pub like_pattern: Option<String>,
    pub event_name: Option<String>,
    pub currency: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// Text arrays for `unnest(key, kind, pattern, event_name)`: goals travel as
/// bind parameters, like every other user-made value.
pub type GoalArrays = (Vec<String>, Vec<String>, Vec<Option<String>>, Vec<Option<String>>);

#[derive(Debug, Clone, Default)]
pub struct Goals {
    pub goals: Vec<Goal>,
}

impl Goals {
    pub async fn load(client: &impl tokio_postgres::GenericClient, site: SiteId) -> Result<Self, tokio_postgres::Error> {
        let rows = client
            .query(
                "SELECT id, kind, display_name, page_path, event_name, currency, created_at
                 FROM goals WHERE site_id = $1 ORDER BY display_name",
                &[site.as_uuid()],
            )
            .await?;
        let goals = rows
            .iter()
            .map(|r| Goal {
                id: r.get(0),
                kind: r.get(1),
                display_name: r.get(2),
                like_pattern: r.get::<_, Option<String>>(3).as_deref().map(like_pattern),
                event_name: r.get(4),
                currency: r.get(5),
                created_at: r.get(6),
            })
            .collect();
        Ok(Self { goals })
    }

    /// When the newest goal was made: rollups older than that lack its rows.
    pub fn newest(&self) -> Option<DateTime<Utc>> {
        self.goals.iter().map(|g| g.created_at).max()
    }

    pub fn by_id(&self, id: &str) -> Option<&Goal> {
        self.goals.iter().find(|g| g.id.to_string() == id)
    }

    pub fn by_name(&self, name: &str) -> Option<&Goal> {
        self.goals.iter().find(|g| g.display_name == name)
    }

    /// Arrays keyed by goal id (the rollup rows).
    pub fn by_id_arrays(&self) -> GoalArrays {
        arrays(self.goals.iter(), |g| g.id.to_string())
    }

    /// Arrays keyed by display name, for the given goals only.
    pub fn by_name_arrays<'a>(goals: impl Iterator<Item = &'a Goal>) -> GoalArrays {
        arrays(goals, |g| g.display_name.clone())
    }

    /// Whether an event `ev` matches the goal row `g` of such an `unnest`.
    /// A revenue goal converts on its event name; its revenue is reported per currency.
    pub fn match_sql() -> String {
        format!(
            "(g.kind = 'pageview' AND ev.event_type = 'pageview' AND ev.pathname LIKE g.pattern)
             OR (g.kind <> 'pageview' AND ev.event_type IN {INTERACTIVE} AND ev.name = g.event_name)"
        )
    }
}

fn arrays<'a>(goals: impl Iterator<Item = &'a Goal>, key: impl Fn(&Goal) -> String) -> GoalArrays {
    let mut out: GoalArrays = Default::default();
    for g in goals {
        out.0.push(key(g));
        out.1.push(g.kind.clone());
        out.2.push(g.like_pattern.clone());
        out.3.push(g.event_name.clone());
    }
    out
}

/// `/blog/*` → `/blog/%`, with LIKE's own wildcards taken literally.
pub fn like_pattern(path: &str) -> String {
    let mut out = String::with_capacity(path.len() + 4);
    for c in path.chars() {
        match c {
            '\\' | '%' | '_' => {
                out.push('\\');
                out.push(c);
            }
            '*' => out.push('%'),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn star_is_the_only_wildcard() {
        assert_eq!(like_pattern("/blog/*"), "/blog/%");
        assert_eq!(like_pattern("/100%_off"), "/100\\%\\_off");
    }
}
