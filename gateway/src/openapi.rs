//! The OpenAPI document, generated from the handlers' annotations (utoipa), served at
//! `/openapi.json`.

use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

#[derive(OpenApi)]
#[openapi(
    info(title = "Sightline", description = "Live-stream media intelligence: streams, live feed, search, SQL."),
    paths(
        crate::streams::create_stream, crate::streams::list_streams, crate::streams::get_stream, crate::streams::stream_source,
        crate::streams::delete_stream, crate::streams::pause_stream, crate::streams::resume_stream,
        crate::streams::stream_events, crate::routes::healthz, crate::routes::readyz, crate::routes::metrics,
        crate::feed::feed, crate::feed::feed_sse, crate::search::search, crate::search::frame,
        crate::search::similar_frames, crate::search::frame_image, crate::search::stream_thumbnail,
        crate::sql::sql, crate::sql::dlq, crate::nodes::list_nodes, crate::nodes::drain_node,
    ),
    components(schemas(crate::error::ErrorBody, crate::error::ErrorDetail, crate::streams::CreateStream, crate::sql::SqlRequest)),
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
