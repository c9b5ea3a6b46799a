//! The OpenAPI document, generated from the handlers' annotations.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

/// Root of the OpenAPI document; paths are added by the router from the same handlers it serves.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "Nova video ranking service",
        description = "Personalized, ranked, paginated reels feed and engagement ingestion."
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "feed", description = "The reels feed"),
        (name = "events", description = "Engagement events"),
        (name = "health", description = "Health checks"),
        (name = "admin", description = "Operator routes; the token needs the admin role"),
        (name = "experiments", description = "A/B tests of ranking weights and models; the token needs the admin role"),
        (name = "operations", description = "Metrics and API description"),
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
                    .bearer_format("JWT (RS256)")
                    .build(),
            ),
        );
    }
}
