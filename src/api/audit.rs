//! `/audit-events` (SPEC §8): the audit log, read by organization admins (their organization)
//! and superusers (every organization, or one). Events are written by the handlers of every
//! write, in the write's own transaction (`store::audit::record`).

use poem_openapi::{OpenApi, param::Query, payload::Json};
use time::{Date, OffsetDateTime, PrimitiveDateTime, Time, format_description::well_known::Rfc3339};

use crate::{
    AppState,
    api::ApiTags,
    auth::BearerAuth,
    authz,
    db::format_ts,
    error::{ApiError, ApiResult},
    model::audit::AuditEvent,
    pagination::{ListResponse, Page},
    store::{self, audit::Filter},
    validate,
};

pub struct AuditApi {
    pub state: AppState,
}

#[OpenApi(tag = "ApiTags::Audit")]
impl AuditApi {
    /// List audit events
    ///
    /// Organization admins: their organization's events; superusers: every organization's
    /// (including events of no organization, such as failed logins of unknown usernames) unless
    /// `organization_id` narrows it. Newest first. `from` and `to` are inclusive, each an RFC 3339
    /// timestamp or a day `YYYY-MM-DD` (UTC; as `to`, the whole day).
    #[oai(path = "/audit-events", method = "get")]
    #[allow(clippy::too_many_arguments)]
    async fn list_audit_events(
        &self,
        auth: BearerAuth,
        skip: Query<Option<i64>>,
        limit: Query<Option<i64>>,
        organization_id: Query<Option<String>>,
        actor_user_id: Query<Option<String>>,
        action: Query<Option<String>>,
        target_type: Query<Option<String>>,
        target_id: Query<Option<String>>,
        from: Query<Option<String>>,
        to: Query<Option<String>>,
    ) -> ApiResult<Json<ListResponse<AuditEvent>>> {
        let scope = authz::require_org_admin(&auth.0)?.narrowed(validate::filter_id(organization_id.0).as_deref())?;
        let page = Page::new(skip.0, limit.0)?;
        let text = |v: Option<String>| v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
        let filter = Filter {
            organization_id: scope.org().map(str::to_string),
            actor_user_id: validate::filter_id(actor_user_id.0),
            action: text(action.0),
            target_type: text(target_type.0),
            target_id: validate::filter_id(target_id.0),
            from: text(from.0).map(|t| instant("from", &t, false)).transpose()?,
            to: text(to.0).map(|t| instant("to", &t, true)).transpose()?,
        };
        if let (Some(f), Some(t)) = (&filter.from, &filter.to)
            && f > t
        {
            return Err(ApiError::bad_request("from must not be after to"));
        }
        let (rows, total) = self.state.store.read(move |c| store::audit::list(c, &filter, page)).await?;
        Ok(Json(page.wrap(rows, total)))
    }
}

/// A bound of the time filter in the stored format: an RFC 3339 timestamp, or a day (its first
/// instant, or with `end_of_day` its last).
fn instant(field: &str, raw: &str, end_of_day: bool) -> ApiResult<String> {
    let bad = || {
        ApiError::bad_request(format!(
            "{field} must be an RFC 3339 timestamp like 2026-01-31T12:00:00Z or a day like 2026-01-31"
        ))
    };
    if let Ok(t) = OffsetDateTime::parse(raw, &Rfc3339) {
        return if (1..=9999).contains(&t.to_offset(time::UtcOffset::UTC).year()) {
            Ok(format_ts(t))
        } else {
            Err(bad())
        };
    }
    let day = Date::parse(raw, time::macros::format_description!("[year]-[month]-[day]")).map_err(|_| bad())?;
    if raw.len() != 10 || day.year() < 1 {
        return Err(bad());
    }
    let at = if end_of_day { Time::from_hms_micro(23, 59, 59, 999_999).map_err(|_| bad())? } else { Time::MIDNIGHT };
    Ok(format_ts(PrimitiveDateTime::new(day, at).assume_utc()))
}

#[cfg(test)]
mod tests {
    use super::instant;

    #[test]
    fn bounds_are_timestamps_or_whole_days() {
        assert_eq!(instant("from", "2026-03-04", false).unwrap(), "2026-03-04T00:00:00.000000Z");
        assert_eq!(instant("to", "2026-03-04", true).unwrap(), "2026-03-04T23:59:59.999999Z");
        assert_eq!(instant("from", "2026-03-04T10:00:00+02:00", false).unwrap(), "2026-03-04T08:00:00.000000Z");
        for bad in ["yesterday", "2026-13-01", "2026-3-4", "0000-01-01"] {
            assert!(instant("from", bad, false).unwrap_err().detail.contains("from must be"), "{bad}");
        }
    }
}
