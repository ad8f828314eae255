//! The OpenAPI document, generated from the handlers' annotations (utoipa), served at
//! `/openapi.json`.

use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

#[derive(OpenApi)]
#[openapi(
    info(title = "Sightline", description = "Live-stream media intelligence: streams, live feed, search, SQL."),
    paths(
        crate::routes::create_stream, crate::routes::list_streams, crate::routes::get_stream, crate::routes::stream_source,
        crate::routes::delete_stream, crate::routes::pause_stream, crate::routes::resume_stream,
        crate::routes::stream_events, crate::routes::healthz, crate::routes::readyz, crate::routes::metrics,
        crate::feed::feed, crate::feed::feed_sse, crate::search::search, crate::search::frame,
        crate::search::similar_frames, crate::search::frame_image, crate::search::stream_thumbnail,
        crate::sql::sql, crate::sql::dlq,
    ),
    components(schemas(crate::error::ErrorBody, crate::error::ErrorDetail, crate::routes::CreateStream, crate::sql::SqlRequest)),
    modifiers(&Bearer),
)]
struct ApiDoc;

struct Bearer;

impl utoipa::Modify for Bearer {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
