//! `/usage`: tokens and requests spent on generated replies (issue 6), per user, agent config,
//! model or day. Org admins see their whole organization, everyone else only themselves.

use poem_openapi::{Object, OpenApi, param::Query, payload::Json};
use time::{Date, macros::format_description};

pub use crate::model::usage::{UsageGroup, UsageRow};
use crate::{
    AppState,
    api::ApiTags,
    auth::BearerAuth,
    authz,
    error::{ApiError, ApiResult},
    limits::Budget,
    store, validate,
};

#[derive(Object, Debug)]
pub struct UsageReport {
    pub organization_id: String,
    /// Set when the report covers only the caller (not an org admin)
    pub user_id: Option<String>,
    pub from: String,
    pub to: String,
    pub group_by: UsageGroup,
    pub data: Vec<UsageRow>,
    pub totals: UsageRow,
    /// The token budgets in force for the report's scope, each with what is left of it now
    /// (whatever `from` and `to`): for an organization's report its `org_monthly_tokens`; for
    /// one user's report their `user_daily_tokens`, then the organization's `org_monthly_tokens`.
    /// Empty when no budget is set (`[limits]`, or the organization's `settings.limits`)
    pub budgets: Vec<Budget>,
}

pub struct UsageApi {
    pub state: AppState,
}

#[OpenApi(tag = "ApiTags::Usage")]
impl UsageApi {
    /// Token usage of generated replies
    ///
    /// Any authenticated user. `from` and `to` are inclusive days (`YYYY-MM-DD`, UTC; default:
    /// the last 30 days); `group_by` is `user`, `agent_config`, `model` or `day` (default). Org
    /// admins see their whole organization (superusers may pick one with `organization_id`),
    /// everyone else only their own usage. Failed and cancelled requests count with the tokens
    /// they used (estimated as characters / 4 when the provider did not report them).
    /// `budgets` lists the token budgets in force (SPEC §8) with what is left of each.
    #[oai(path = "/usage", method = "get")]
    async fn usage(
        &self,
        auth: BearerAuth,
        from: Query<Option<String>>,
        to: Query<Option<String>>,
        group_by: Query<Option<UsageGroup>>,
        organization_id: Query<Option<String>>,
    ) -> ApiResult<Json<UsageReport>> {
        let user = auth.0;
        let asked = validate::filter_id(organization_id.0);
        if let (true, Some(org)) = (user.is_superuser, &asked) {
            validate::path_id(org, "Organization")
                .map_err(|_| ApiError::bad_request("organization_id must be an organization id"))?;
        }
        let (organization_id, user_id) = authz::usage_view(&user, asked.as_deref())?;
        let to = match to.0 {
            Some(raw) => day("to", &raw)?,
            None => time::OffsetDateTime::now_utc().date(),
        };
        let from = match from.0 {
            Some(raw) => day("from", &raw)?,
            None => to.checked_sub(time::Duration::days(29)).unwrap_or(Date::MIN),
        };
        if from > to {
            return Err(ApiError::bad_request("from must not be after to"));
        }
        let end = to.next_day().ok_or_else(|| ApiError::bad_request("to is out of range"))?;
        let group = group_by.0.unwrap_or(UsageGroup::Day);
        let (org, uid, start, stop) = (organization_id.clone(), user_id.clone(), from.to_string(), end.to_string());
        let data = self
            .state
            .store
            .read(move |c| store::completions::usage(c, &org, uid.as_deref(), &start, &stop, group))
            .await?;
        let totals = data.iter().fold(
            UsageRow { key: None, label: None, prompt_tokens: 0, completion_tokens: 0, total_tokens: 0, requests: 0 },
            |mut t, r| {
                t.prompt_tokens += r.prompt_tokens;
                t.completion_tokens += r.completion_tokens;
                t.total_tokens += r.total_tokens;
                t.requests += r.requests;
                t
            },
        );
        let budgets = self.budgets(&organization_id, user_id.as_deref()).await?;
        Ok(Json(UsageReport {
            budgets,
            organization_id,
            user_id,
            from: from.to_string(),
            to: to.to_string(),
            group_by: group,
            data,
            totals,
        }))
    }
}

impl UsageApi {
    /// The budgets in force for a report of the organization or of one user in it, as of now.
    async fn budgets(&self, organization_id: &str, user_id: Option<&str>) -> ApiResult<Vec<Budget>> {
        let defaults = self.state.config.limits.clone();
        let (org, uid) = (organization_id.to_string(), user_id.map(str::to_string));
        let (month, day) = crate::limits::periods(time::OffsetDateTime::now_utc());
        self.state
            .store
            .read(move |c| store::limits::budgets_in_force(c, &defaults, &org, uid.as_deref(), &month, &day))
            .await
            .map_err(Into::into)
    }
}

/// A day `YYYY-MM-DD` of the years 0001..=9999.
fn day(field: &str, raw: &str) -> ApiResult<Date> {
    let raw = raw.trim();
    let bad = || ApiError::bad_request(format!("{field} must be a day like 2026-01-31 (years 0001 to 9999)"));
    if raw.len() != 10 || !raw.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(bad());
    }
    let d = Date::parse(raw, format_description!("[year]-[month]-[day]")).map_err(|_| bad())?;
    if d.year() < 1 {
        return Err(bad());
    }
    Ok(d)
}
