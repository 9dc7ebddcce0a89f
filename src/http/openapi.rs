//! The OpenAPI document, generated from the handlers' annotations, and Swagger UI served from the
//! binary itself (no CDN), so `/docs` works offline.

use axum::Router;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::SwaggerUi;

use crate::users::routes as users;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "socialnet",
        description = "A social-network backend built to measure what makes web applications fast. \
                       Ids are strings; errors carry `{message, request_id, code}`.",
    ),
    paths(
        users::register,
        users::login,
        users::get_user,
        users::search,
        crate::friends::routes::set_friend,
        crate::friends::routes::delete_friend,
        crate::posts::routes::create_post,
        crate::posts::routes::update_post,
        crate::posts::routes::delete_post,
        crate::posts::routes::get_post,
        crate::posts::routes::feed,
        crate::live::routes::feed_posted,
        crate::dialogs::routes::send,
        crate::dialogs::routes::list,
        super::ops::health,
        super::ops::ready,
        super::ops::metrics,
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "users", description = "Registration, login, profiles, search"),
        (name = "friends", description = "Following users"),
        (name = "posts", description = "Posts, the news feed and the live feed"),
        (name = "dialogs", description = "Private messages between two users"),
        (name = "operations", description = "Health, readiness, metrics"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// `/openapi.json` and Swagger UI under `/docs`.
pub fn docs_router() -> Router {
    SwaggerUi::new("/docs")
        .url("/openapi.json", ApiDoc::openapi())
        .into()
}
