//! The authorization model of SPEC §3 as pure functions: no I/O here. Imports only `model` and
//! `error`.
//!
//! A handler states its rule in its first line (`authz::require(&user, Permission::X)?`) and gets
//! back the tenant [`Scope`] that every store function takes; only this module makes one.

use crate::{
    error::ApiError,
    model::{
        audit::{Actor, Client},
        roles::Role,
    },
};

/// The 13 system permissions. Their names are part of the API contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    UsersRead,
    UsersWrite,
    UsersDelete,
    OrganizationsRead,
    OrganizationsWrite,
    ProjectsRead,
    ProjectsWrite,
    ProjectsDelete,
    RolesRead,
    RolesWrite,
    AgentsRead,
    AgentsWrite,
    ConversationsWrite,
}

use Permission::*;

impl Permission {
    pub const ALL: [Permission; 13] = [
        UsersRead,
        UsersWrite,
        UsersDelete,
        OrganizationsRead,
        OrganizationsWrite,
        ProjectsRead,
        ProjectsWrite,
        ProjectsDelete,
        RolesRead,
        RolesWrite,
        AgentsRead,
        AgentsWrite,
        ConversationsWrite,
    ];

    /// What the system `member` role holds.
    pub const MEMBER: [Permission; 8] = [
        UsersRead,
        OrganizationsRead,
        ProjectsRead,
        ProjectsWrite,
        ProjectsDelete,
        RolesRead,
        AgentsRead,
        ConversationsWrite,
    ];

    pub fn name(self) -> &'static str {
        match self {
            UsersRead => "users:read",
            UsersWrite => "users:write",
            UsersDelete => "users:delete",
            OrganizationsRead => "organizations:read",
            OrganizationsWrite => "organizations:write",
            ProjectsRead => "projects:read",
            ProjectsWrite => "projects:write",
            ProjectsDelete => "projects:delete",
            RolesRead => "roles:read",
            RolesWrite => "roles:write",
            AgentsRead => "agents:read",
            AgentsWrite => "agents:write",
            ConversationsWrite => "conversations:write",
        }
    }

    pub fn from_name(name: &str) -> Option<Permission> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }

    pub fn resource(self) -> &'static str {
        self.name().split_once(':').map(|(r, _)| r).unwrap_or_default()
    }

    pub fn action(self) -> &'static str {
        self.name().split_once(':').map(|(_, a)| a).unwrap_or_default()
    }

    pub fn description(self) -> &'static str {
        match self {
            UsersRead => "List and view users of the organization",
            UsersWrite => "Create users, edit them, reset passwords, activate them",
            UsersDelete => "Deactivate (soft-delete) users",
            OrganizationsRead => "View the organization and its members",
            OrganizationsWrite => "Edit the organization",
            ProjectsRead => "List and view projects and their members",
            ProjectsWrite => "Create and edit projects",
            ProjectsDelete => "Delete projects",
            RolesRead => "List and view roles",
            RolesWrite => "Create, edit and delete custom roles; assign roles to users",
            AgentsRead => "List and view agent configs",
            AgentsWrite => "Create, edit, deactivate and activate agent configs",
            ConversationsWrite => "Hold conversations with agents",
        }
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

/// A set of permissions, as a role grants them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PermissionSet(u16);

impl PermissionSet {
    /// The permissions a role read back from the store holds (names it does not know are none).
    pub fn of_role(role: &Role) -> PermissionSet {
        role.permissions.iter().filter_map(|n| Permission::from_name(n)).collect()
    }
    pub fn contains(self, p: Permission) -> bool {
        self.0 & p.bit() != 0
    }
    pub fn insert(&mut self, p: Permission) {
        self.0 |= p.bit();
    }
    pub fn iter(self) -> impl Iterator<Item = Permission> {
        Permission::ALL.into_iter().filter(move |p| self.contains(*p))
    }
    pub fn names(self) -> Vec<String> {
        self.iter().map(|p| p.name().to_string()).collect()
    }
    /// From comma-separated names, as `group_concat` gives them; unknown names are left out.
    pub fn from_csv(names: Option<&str>) -> PermissionSet {
        names.unwrap_or("").split(',').filter_map(Permission::from_name).collect()
    }
    /// Every permission.
    pub fn all() -> PermissionSet {
        Permission::ALL.into_iter().collect()
    }
    pub fn intersection(self, other: PermissionSet) -> PermissionSet {
        PermissionSet(self.0 & other.0)
    }
    /// Every permission of `self` is one of `other`.
    pub fn is_subset(self, other: PermissionSet) -> bool {
        self.0 & !other.0 == 0
    }
}

impl Extend<Permission> for PermissionSet {
    fn extend<I: IntoIterator<Item = Permission>>(&mut self, iter: I) {
        for p in iter {
            self.insert(p);
        }
    }
}

impl FromIterator<Permission> for PermissionSet {
    fn from_iter<I: IntoIterator<Item = Permission>>(iter: I) -> Self {
        let mut set = PermissionSet::default();
        set.extend(iter);
        set
    }
}

/// The authenticated caller, as the database says it is on this request.
#[derive(Debug, Clone)]
pub struct CurrentUser {
    pub id: String,
    pub username: String,
    pub email: String,
    pub full_name: Option<String>,
    pub organization_id: String,
    pub role_id: Option<String>,
    pub role_name: Option<String>,
    pub role_is_system: bool,
    pub is_superuser: bool,
    pub permissions: PermissionSet,
    /// The login session the access token belongs to (empty for an API key).
    pub session_id: String,
    /// The API key the request came with, if it came with one.
    pub api_key_id: Option<String>,
    /// Where the request came from, for the audit log.
    pub client: Client,
    pub created_at: String,
    pub updated_at: String,
}

/// Which organizations a query may see: a capability. Its field is private, so only this module
/// makes one, from a rule that has run (`require…`, [`CurrentUser::scope`]); a store function that
/// takes a `Scope` cannot be reached without its caller's check, and puts it in every statement's
/// WHERE clause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope(Reach);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Reach {
    /// A superuser: every organization.
    All,
    /// Everyone else: their own organization only.
    Org(String),
}

impl Scope {
    /// The organization to filter on, or `None` for all. For SQL: `(?n IS NULL OR organization_id = ?n)`.
    pub fn org(&self) -> Option<&str> {
        match &self.0 {
            Reach::All => None,
            Reach::Org(id) => Some(id),
        }
    }

    /// Narrows a superuser's scope to one organization when asked (`organization_id` filter).
    /// Anyone else may name only their own organization: another one is a 403, never their
    /// own rows under another organization's name.
    pub fn narrowed(self, organization_id: Option<&str>) -> Result<Scope, ApiError> {
        match (self.0, organization_id) {
            (Reach::All, Some(org)) => Ok(Scope(Reach::Org(org.to_string()))),
            (Reach::Org(own), Some(org)) if own != org => {
                Err(ApiError::forbidden("organization_id may only name your own organization"))
            }
            (reach, _) => Ok(Scope(reach)),
        }
    }

    /// Work the server does on its own behalf in one organization, after the request that asked
    /// for it was checked: a reply job's retrieval in the job's organization; benchmarks and tests.
    /// Never built from request input.
    pub fn system(organization_id: &str) -> Scope {
        Scope(Reach::Org(organization_id.to_string()))
    }

    /// Every organization, for the server's own work (start-up, maintenance) and tests.
    pub fn system_all() -> Scope {
        Scope(Reach::All)
    }
}

impl CurrentUser {
    /// The caller as the audit log names them.
    pub fn actor(&self) -> Actor {
        Actor { user_id: Some(self.id.clone()), api_key_id: self.api_key_id.clone(), client: self.client.clone() }
    }

    pub fn has(&self, p: Permission) -> bool {
        self.is_superuser || self.permissions.contains(p)
    }

    /// A superuser, or a holder of the system `admin` role of their organization.
    pub fn is_org_admin(&self) -> bool {
        self.is_superuser || (self.role_is_system && self.role_name.as_deref() == Some("admin"))
    }

    pub fn scope(&self) -> Scope {
        if self.is_superuser { Scope(Reach::All) } else { Scope(Reach::Org(self.organization_id.clone())) }
    }

    /// The caller's own organization, also for a superuser: where what they create belongs, and
    /// what a reply they start may use.
    pub fn home_scope(&self) -> Scope {
        Scope(Reach::Org(self.organization_id.clone()))
    }

    /// The organization new resources of this caller belong to.
    pub fn home_org(&self) -> &str {
        &self.organization_id
    }

    /// The permission names this caller effectively holds (all of them for a superuser).
    pub fn effective_permissions(&self) -> Vec<String> {
        if self.is_superuser {
            Permission::ALL.iter().map(|p| p.name().to_string()).collect()
        } else {
            self.permissions.names()
        }
    }
}

/// What a request with an API key may do: the key's permissions that its owner still holds.
/// Only a key that keeps every permission its owner has keeps the owner's standing (superuser,
/// organization admin); a narrowed key acts as a member holding just those permissions.
pub fn key_holder(mut owner: CurrentUser, key: PermissionSet, key_id: String) -> CurrentUser {
    let held = if owner.is_superuser { PermissionSet::all() } else { owner.permissions };
    if !held.is_subset(key) {
        owner.is_superuser = false;
        owner.role_is_system = false;
    }
    owner.permissions = key.intersection(held);
    owner.api_key_id = Some(key_id);
    owner
}

/// Sessions, passwords and keys are managed with a person's login, not with an API key.
pub fn require_login(user: &CurrentUser) -> Result<(), ApiError> {
    match user.api_key_id {
        None => Ok(()),
        Some(_) => Err(ApiError::forbidden("This needs a login session, not an API key")),
    }
}

/// The caller must hold `p`; returns the scope their queries run in.
pub fn require(user: &CurrentUser, p: Permission) -> Result<Scope, ApiError> {
    if user.has(p) { Ok(user.scope()) } else { Err(ApiError::forbidden(format!("Missing permission: {}", p.name()))) }
}

/// Organization admins (their organization) and superusers (all of them).
pub fn require_org_admin(user: &CurrentUser) -> Result<Scope, ApiError> {
    if user.is_org_admin() {
        Ok(user.scope())
    } else {
        Err(ApiError::forbidden("Organization admin privileges required"))
    }
}

/// Whose usage report a caller sees (`GET /usage`): an organization admin the whole organization's
/// (a superuser any one's, `organization_id`), everyone else only their own. Returns the
/// organization and, when the report is the caller's own only, their user id.
pub fn usage_view(user: &CurrentUser, organization_id: Option<&str>) -> Result<(String, Option<String>), ApiError> {
    let org = user.scope().narrowed(organization_id)?.org().unwrap_or(user.home_org()).to_string();
    Ok((org, (!user.is_org_admin()).then(|| user.id.clone())))
}

/// Only superusers.
pub fn require_superuser(user: &CurrentUser) -> Result<Scope, ApiError> {
    if user.is_superuser { Ok(Scope(Reach::All)) } else { Err(ApiError::forbidden("Superuser privileges required")) }
}

/// The caller may manage a resource created by `created_by`: its creator or an org admin.
pub fn require_creator_or_admin(user: &CurrentUser, created_by: Option<&str>) -> Result<(), ApiError> {
    if user.is_org_admin() || created_by == Some(user.id.as_str()) {
        Ok(())
    } else {
        Err(ApiError::forbidden("Only the creator or an organization admin may do this"))
    }
}

/// The caller themselves, or someone holding `p` (their own user needs no permission).
pub fn require_self_or(user: &CurrentUser, id: &str, p: Permission) -> Result<Scope, ApiError> {
    if id == user.id { Ok(user.scope()) } else { require(user, p) }
}

/// What a request sets on a user, as the field rules see it.
#[derive(Debug, Default, Clone, Copy)]
pub struct UserFields {
    /// `organization_id` is given.
    pub organization: bool,
    pub is_superuser: Option<bool>,
    pub is_active: Option<bool>,
    /// `email` is given.
    pub email: bool,
    /// `password` is given.
    pub password: bool,
}

/// Creating a user: only a superuser chooses the organization or creates a superuser.
pub fn require_may_create_user(user: &CurrentUser, f: UserFields) -> Result<(), ApiError> {
    if !user.is_superuser && (f.organization || f.is_superuser == Some(true)) {
        return Err(ApiError::forbidden("Only a superuser may set organization_id or is_superuser"));
    }
    Ok(())
}

/// Updating the user `target_id`, before it is read: `is_active` and `password` need
/// `users:write` (also for yourself), `is_superuser` a superuser; nobody deactivates themselves
/// or gives up their own superuser status.
pub fn require_may_update_user(user: &CurrentUser, target_id: &str, f: UserFields) -> Result<(), ApiError> {
    if (f.is_active.is_some() || f.password) && !user.has(Permission::UsersWrite) {
        return Err(ApiError::forbidden("Changing is_active or password needs users:write"));
    }
    if f.is_superuser.is_some() && !user.is_superuser {
        return Err(ApiError::forbidden("Only a superuser may change is_superuser"));
    }
    let is_self = target_id == user.id;
    if is_self && f.is_active == Some(false) {
        return Err(ApiError::bad_request("You cannot deactivate yourself"));
    }
    if is_self && f.is_superuser == Some(false) {
        return Err(ApiError::bad_request("You cannot remove your own superuser status"));
    }
    Ok(())
}

/// Updating the user `target` read from the store: its email, `is_active` or password only by
/// someone who may manage it (no escalation); any field of a superuser only by a superuser.
pub fn require_may_change_user(user: &CurrentUser, target: Standing, f: UserFields) -> Result<(), ApiError> {
    if f.email || f.is_active.is_some() || f.password {
        require_may_manage(user, target)
    } else if target.is_superuser {
        require_superuser(user).map(drop)
    } else {
        Ok(())
    }
}

/// Giving the user `target` the role `role`: the caller may manage the user and confer the role.
pub fn require_may_assign(user: &CurrentUser, target: Standing, role: RoleKind) -> Result<(), ApiError> {
    require_may_manage(user, target)?;
    require_may_confer(user, role)
}

/// Updating an organization: only a superuser (de)activates one, or sets its `settings.limits`.
pub fn require_may_update_org(user: &CurrentUser, sets_is_active: bool) -> Result<(), ApiError> {
    if sets_is_active && !user.is_superuser {
        return Err(ApiError::forbidden("Only a superuser may change is_active of an organization"));
    }
    Ok(())
}

/// Whether the caller may set an organization's token budgets (`settings.limits`).
pub fn may_set_org_limits(user: &CurrentUser) -> bool {
    user.is_superuser
}

/// An API key holds only permissions its creator holds.
pub fn require_holds_all(user: &CurrentUser, wanted: PermissionSet) -> Result<(), ApiError> {
    match wanted.iter().find(|p| !user.has(*p)) {
        Some(p) => Err(ApiError::forbidden(format!("permissions: you do not hold {}", p.name()))),
        None => Ok(()),
    }
}

/// A role as the escalation rule of SPEC §3 sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleKind {
    /// The system `admin` role.
    Admin,
    /// The system `member` role: always allowed.
    Member,
    /// A custom role with these permissions.
    Custom(PermissionSet),
}

impl RoleKind {
    pub fn of(is_system: bool, name: &str, permissions: PermissionSet) -> RoleKind {
        match (is_system, name) {
            (true, "admin") => RoleKind::Admin,
            (true, _) => RoleKind::Member,
            (false, _) => RoleKind::Custom(permissions),
        }
    }
}

impl RoleKind {
    /// The escalation rule's view of a role read back from the store.
    pub fn of_role(role: &Role) -> RoleKind {
        RoleKind::of(role.is_system, &role.name, PermissionSet::of_role(role))
    }
}

/// System roles cannot be changed or deleted, by anyone.
pub fn require_custom_role(role: &Role) -> Result<(), ApiError> {
    if role.is_system { Err(ApiError::forbidden("System roles cannot be changed or deleted")) } else { Ok(()) }
}

/// Editing a role (its fields, a grant, a revocation): a custom role, whose permissions the
/// caller could confer, before and — when the edit gives it `permissions` — after.
pub fn require_may_edit_role(
    user: &CurrentUser,
    role: &Role,
    permissions: Option<PermissionSet>,
) -> Result<(), ApiError> {
    require_custom_role(role)?;
    require_may_confer(user, RoleKind::of_role(role))?;
    permissions.map_or(Ok(()), |set| require_may_confer(user, RoleKind::Custom(set)))
}

/// What the escalation rule needs to know of a user someone wants to change.
#[derive(Debug, Clone, Copy)]
pub struct Standing {
    pub is_superuser: bool,
    /// `None` for a user without a role.
    pub role: Option<RoleKind>,
}

/// No escalation: the caller may give `role` to someone (create a user with it, assign it) or
/// make a role with these permissions (create, edit, grant) only when it confers nothing the
/// caller lacks. The system `admin` role only by an org admin; `member` always.
pub fn require_may_confer(user: &CurrentUser, role: RoleKind) -> Result<(), ApiError> {
    let allowed = match role {
        RoleKind::Admin => user.is_org_admin(),
        RoleKind::Member => true,
        RoleKind::Custom(perms) => user.is_org_admin() || perms.is_subset(user.permissions),
    };
    if allowed {
        Ok(())
    } else if role == RoleKind::Admin {
        Err(ApiError::forbidden("Only an organization admin may give the admin role"))
    } else {
        Err(ApiError::forbidden("You may not confer permissions that you do not hold yourself"))
    }
}

/// No escalation: the caller may change the password, email, `is_active` or role of (or
/// delete) `target` only when they could give the target's role themselves; a superuser only
/// by a superuser, a holder of the system `admin` role only by an org admin.
pub fn require_may_manage(user: &CurrentUser, target: Standing) -> Result<(), ApiError> {
    if target.is_superuser {
        return if user.is_superuser {
            Ok(())
        } else {
            Err(ApiError::forbidden("Only a superuser may change a superuser"))
        };
    }
    match target.role {
        Some(RoleKind::Admin) if !user.is_org_admin() => {
            Err(ApiError::forbidden("Only an organization admin may change a holder of the admin role"))
        }
        Some(RoleKind::Custom(perms)) if !user.is_org_admin() && !perms.is_subset(user.permissions) => {
            Err(ApiError::forbidden("This user's role holds permissions that you do not hold"))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(perms: &[Permission], role: &str, system: bool, superuser: bool) -> CurrentUser {
        CurrentUser {
            id: "u1".into(),
            username: "u".into(),
            email: "u@example.com".into(),
            full_name: None,
            organization_id: "o1".into(),
            role_id: Some("r1".into()),
            role_name: Some(role.into()),
            role_is_system: system,
            is_superuser: superuser,
            permissions: perms.iter().copied().collect(),
            session_id: "s".into(),
            api_key_id: None,
            client: Default::default(),
            created_at: "2026-01-01T00:00:00.000000Z".into(),
            updated_at: "2026-01-01T00:00:00.000000Z".into(),
        }
    }

    #[test]
    fn names_round_trip_and_are_thirteen() {
        assert_eq!(Permission::ALL.len(), 13);
        for p in Permission::ALL {
            assert_eq!(Permission::from_name(p.name()), Some(p));
            assert_eq!(format!("{}:{}", p.resource(), p.action()), p.name());
        }
        assert_eq!(Permission::from_name("users:admin"), None);
    }

    #[test]
    fn user_field_rules() {
        let status = |r: Result<(), ApiError>| r.map_or_else(|e| e.status.as_u16(), |()| 200);
        let writer = user(&[UsersRead, UsersWrite], "ops", false, false);
        let member = user(&Permission::MEMBER, "member", true, false);
        let root = user(&[], "admin", true, true);
        let into_org = UserFields { organization: true, ..UserFields::default() };
        assert_eq!(status(require_may_create_user(&writer, into_org)), 403);
        assert_eq!(status(require_may_create_user(&root, into_org)), 200);
        let password = UserFields { password: true, ..UserFields::default() };
        assert_eq!(status(require_may_update_user(&member, "u1", password)), 403, "even for yourself");
        assert_eq!(status(require_may_update_user(&writer, "u2", password)), 200);
        let off = UserFields { is_active: Some(false), ..UserFields::default() };
        assert_eq!(status(require_may_update_user(&writer, "u1", off)), 400, "not yourself");
        let demote = UserFields { is_superuser: Some(false), ..UserFields::default() };
        assert_eq!(status(require_may_update_user(&writer, "u2", demote)), 403);
        assert_eq!(status(require_may_update_user(&root, "u1", demote)), 400);
        let superuser = Standing { is_superuser: true, role: Some(RoleKind::Member) };
        let name_only = UserFields::default();
        assert_eq!(status(require_may_change_user(&writer, superuser, name_only)), 403);
        let admin = Standing { is_superuser: false, role: Some(RoleKind::Admin) };
        assert_eq!(status(require_may_change_user(&writer, admin, name_only)), 200, "a name is no escalation");
        assert_eq!(status(require_may_change_user(&writer, admin, password)), 403);
        let plain = Standing { is_superuser: false, role: Some(RoleKind::Member) };
        assert_eq!(status(require_may_assign(&writer, plain, RoleKind::Admin)), 403);
        assert_eq!(
            status(require_may_assign(&writer, plain, RoleKind::Custom([UsersRead].into_iter().collect()))),
            200
        );
        assert_eq!(status(require_holds_all(&writer, [UsersRead, UsersWrite].into_iter().collect())), 200);
        assert_eq!(status(require_holds_all(&writer, [RolesWrite].into_iter().collect())), 403);
        assert_eq!(status(require_may_update_org(&writer, true)), 403);
        assert_eq!(status(require_may_update_org(&root, true)), 200);
    }

    #[test]
    fn system_roles_cannot_be_edited() {
        let admin = user(&Permission::ALL, "admin", true, false);
        let role = |system: bool, perms: &[&str]| Role {
            id: "r".into(),
            organization_id: "o1".into(),
            name: if system { "member".into() } else { "custom".into() },
            description: None,
            is_system: system,
            permissions: perms.iter().map(|p| p.to_string()).collect(),
            user_count: 0,
            created_at: String::new(),
            updated_at: String::new(),
        };
        assert_eq!(require_custom_role(&role(true, &[])).unwrap_err().status, 403);
        assert_eq!(require_may_edit_role(&admin, &role(true, &[]), None).unwrap_err().status, 403);
        assert!(require_may_edit_role(&admin, &role(false, &["users:read"]), None).is_ok());
        let reader = user(&[RolesWrite, UsersRead], "ops", false, false);
        let wider = Some([UsersRead, UsersWrite].into_iter().collect());
        assert_eq!(require_may_edit_role(&reader, &role(false, &["users:read"]), wider).unwrap_err().status, 403);
        assert_eq!(PermissionSet::of_role(&role(false, &["users:read", "nope"])).names(), ["users:read"]);
    }

    #[test]
    fn member_lacks_write_permissions() {
        let m = user(&Permission::MEMBER, "member", true, false);
        assert!(require(&m, ProjectsRead).is_ok());
        assert_eq!(require(&m, UsersWrite).unwrap_err().status, 403);
        assert_eq!(require(&m, ProjectsRead).unwrap(), Scope(Reach::Org("o1".into())));
        assert!(!m.is_org_admin());
    }

    #[test]
    fn admin_is_system_role_named_admin() {
        assert!(user(&Permission::ALL, "admin", true, false).is_org_admin());
        // a custom role called "Admin" with every permission is not the system admin role
        assert!(!user(&Permission::ALL, "admin", false, false).is_org_admin());
    }

    #[test]
    fn superuser_sees_all_and_may_narrow() {
        let s = user(&[], "member", true, true);
        assert_eq!(require(&s, RolesWrite).unwrap(), Scope(Reach::All));
        assert_eq!(Scope(Reach::All).narrowed(Some("o2")).unwrap(), Scope(Reach::Org("o2".into())));
        assert_eq!(Scope(Reach::Org("o1".into())).narrowed(Some("o2")).unwrap_err().status, 403);
        assert_eq!(Scope(Reach::Org("o1".into())).narrowed(Some("o1")).unwrap(), Scope(Reach::Org("o1".into())));
        assert_eq!(s.effective_permissions().len(), 13);
    }

    #[test]
    fn creator_or_admin() {
        let m = user(&Permission::MEMBER, "member", true, false);
        assert!(require_creator_or_admin(&m, Some("u1")).is_ok());
        assert!(require_creator_or_admin(&m, Some("u2")).is_err());
        assert!(require_creator_or_admin(&m, None).is_err());
    }

    #[test]
    fn no_escalation() {
        let standing = |is_superuser, role| Standing { is_superuser, role: Some(role) };
        let writer = user(&[UsersRead, UsersWrite, RolesWrite], "writer", false, false);
        let admin = user(&Permission::ALL, "admin", true, false);
        let all = Permission::ALL.into_iter().collect::<PermissionSet>();
        let small = [UsersRead].into_iter().collect::<PermissionSet>();
        // giving roles
        assert_eq!(require_may_confer(&writer, RoleKind::Admin).unwrap_err().status, 403);
        assert!(require_may_confer(&writer, RoleKind::Member).is_ok());
        assert!(require_may_confer(&writer, RoleKind::Custom(small)).is_ok());
        assert_eq!(require_may_confer(&writer, RoleKind::Custom(all)).unwrap_err().status, 403);
        assert!(require_may_confer(&admin, RoleKind::Admin).is_ok());
        assert!(require_may_confer(&admin, RoleKind::Custom(all)).is_ok());
        // changing users
        assert!(require_may_manage(&writer, standing(false, RoleKind::Member)).is_ok());
        assert!(require_may_manage(&writer, standing(false, RoleKind::Custom(small))).is_ok());
        assert!(require_may_manage(&writer, standing(false, RoleKind::Custom(all))).is_err());
        assert!(require_may_manage(&writer, standing(false, RoleKind::Admin)).is_err());
        assert!(require_may_manage(&admin, standing(false, RoleKind::Admin)).is_ok());
        assert!(require_may_manage(&admin, standing(true, RoleKind::Admin)).is_err());
        assert!(require_may_manage(&user(&[], "member", true, true), standing(true, RoleKind::Admin)).is_ok());
        assert!(PermissionSet::default().is_subset(small) && small.is_subset(all) && !all.is_subset(small));
    }
}
