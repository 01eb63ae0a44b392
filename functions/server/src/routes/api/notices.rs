//! The signed-in holder's notices (policy changes and the like, see
//! [`crate::notices`]): the banner's list, and dismissing one.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ApiPath, ErrorBody, now};
use crate::auth::SignedInUser;
use crate::error::ApiResult;
use crate::notices::{self, Notice};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_notices)).routes(routes!(dismiss_notice))
}

#[derive(Debug, serde::Serialize, ToSchema)]
pub struct NoticeList {
    /// Notices published after your account was made that you have not dismissed, oldest first.
    pub notices: Vec<Notice>,
}

/// Your notices not dismissed yet; each is recorded as seen the first time it is returned.
#[utoipa::path(get, path = "/api/notices", tag = "notices",
    responses((status = 200, body = NoticeList), (status = 401, body = ErrorBody), (status = 403, description = "an API key: sign in as a user", body = ErrorBody)))]
async fn list_notices(State(state): State<AppState>, user: SignedInUser) -> ApiResult<Json<NoticeList>> {
    Ok(Json(NoticeList { notices: notices::for_holder(&state.pool, user.user_id, now()).await? }))
}

/// Hides a notice for you for good; dismissing it again changes nothing.
#[utoipa::path(post, path = "/api/notices/{notice_id}/dismiss", tag = "notices",
    params(("notice_id" = i64, Path, description = "the notice's id")),
    responses((status = 204, description = "dismissed (now or before)"), (status = 401, body = ErrorBody),
        (status = 403, description = "an API key: sign in as a user", body = ErrorBody),
        (status = 404, description = "no such notice for you", body = ErrorBody)))]
async fn dismiss_notice(State(state): State<AppState>, user: SignedInUser, ApiPath(notice_id): ApiPath<i64>) -> ApiResult<StatusCode> {
    notices::dismiss(&state.pool, user.user_id, notice_id, now()).await?;
    Ok(StatusCode::NO_CONTENT)
}
