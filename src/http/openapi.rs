//! The OpenAPI document: its head here, its paths from the routers themselves (each route is
//! registered with its handler's annotation, so none can be served undocumented), and Swagger UI
//! served from the binary itself (no CDN), so `/docs` works offline.

use axum::Router;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::SwaggerUi;

/// The document's head: what the routers' paths are merged into (see [`super::routes`]).
#[derive(OpenApi)]
#[openapi(
    info(
        title = "socialnet",
        description = "A social-network backend built to measure what makes web applications fast. \
                       Ids are strings; errors carry `{message, request_id, code}`.",
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

/// The dialog service's document head (`serve --service dialogs`): its own API, versioned, and
/// the old paths it serves for the main service.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "socialnet dialogs",
        version = "2.0.0",
        description = "The dialog service: private messages between two users. New clients use \
                       `/v2/dialogs`; `/dialog/{user_id}/send` and `/list` are the main API's \
                       paths, kept for it and its clients. Tokens are the main service's (one \
                       shared secret). Ids are strings; errors carry `{message, request_id, code}`.",
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "dialogs", description = "Private messages between two users"),
        (name = "operations", description = "Health, readiness, metrics"),
    )
)]
pub struct DialogServiceDoc;

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

/// The whole document, as `/openapi.json` serves it.
pub fn document() -> utoipa::openapi::OpenApi {
    super::routes().into_openapi()
}

/// The dialog service's document, as its `/openapi.json` serves it.
pub fn dialog_service_document() -> utoipa::openapi::OpenApi {
    super::dialog_service_routes().into_openapi()
}

/// `/openapi.json` and Swagger UI under `/docs`.
pub fn docs_router(document: utoipa::openapi::OpenApi) -> Router {
    SwaggerUi::new("/docs")
        .url("/openapi.json", document)
        .into()
}
