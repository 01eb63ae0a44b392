//! Roles in an organisation and what each may do. Pure: every route asks
//! [`Role::allows`] and nothing else decides.

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Owner,
    Admin,
    Editor,
    Viewer,
    Billing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// See the organisation, its members and its sites' settings.
    ViewOrganization,
    ViewStats,
    /// Create and change sites, goals and share links.
    EditSites,
    DeleteSites,
    /// Invite, remove and change the role of members (owners excepted).
    ManageMembers,
    ManageApiKeys,
    ViewAuditLog,
    ManageBilling,
    /// Find, export and erase one visitor's events (visitor requests).
    AnswerVisitorRequests,
    /// Import data from other tools and delete imports (people, not API keys).
    ImportData,
    /// Rename or delete the organisation, change owners.
    OwnOrganization,
}

impl Role {
    pub const ALL: [Role; 5] = [Role::Owner, Role::Admin, Role::Editor, Role::Viewer, Role::Billing];

    pub fn allows(self, permission: Permission) -> bool {
        use Permission::*;
        match self {
            Role::Owner => true,
            Role::Admin => !matches!(permission, ManageBilling | OwnOrganization),
            Role::Editor => matches!(permission, ViewOrganization | ViewStats | EditSites),
            Role::Viewer => matches!(permission, ViewOrganization | ViewStats),
            Role::Billing => matches!(permission, ViewOrganization | ManageBilling),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Editor => "editor",
            Role::Viewer => "viewer",
            Role::Billing => "billing",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown role `{0}`: expected owner, admin, editor, viewer or billing")]
pub struct UnknownRole(String);

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL.into_iter().find(|r| r.as_str() == s).ok_or_else(|| UnknownRole(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Permission::*;

    #[test]
    fn roles_round_trip_through_text() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>().unwrap(), r);
        }
        assert!("root".parse::<Role>().is_err());
    }

    #[test]
    fn each_role_has_exactly_its_permissions() {
        let all = [ViewOrganization, ViewStats, EditSites, DeleteSites, ManageMembers, ManageApiKeys, ViewAuditLog, ManageBilling, AnswerVisitorRequests, OwnOrganization];
        let granted = |r: Role| all.iter().filter(|p| r.allows(**p)).count();
        assert_eq!(granted(Role::Owner), 10);
        assert_eq!(granted(Role::Admin), 8);
        assert!(Role::Admin.allows(AnswerVisitorRequests) && !Role::Editor.allows(AnswerVisitorRequests));
        assert!(!Role::Admin.allows(OwnOrganization));
        assert!(Role::Editor.allows(EditSites) && !Role::Editor.allows(DeleteSites));
        assert!(Role::Viewer.allows(ViewStats) && !Role::Viewer.allows(EditSites));
        assert!(Role::Billing.allows(ManageBilling) && !Role::Billing.allows(ViewStats));
    }
}
