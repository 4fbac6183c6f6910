//! The shared state every handler gets (`State<App>`) and the routes.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use millrace_core::Conn;
use millrace_core::{Queue, inspect};

use crate::error::{PageError, PageResult};
use crate::history::History;
use crate::{WebConfig, WebError};

/// The dashboard's state: the connection, the configuration, the CSRF
/// token and the rate history. Cheap to clone.
#[derive(Clone)]
pub(crate) struct App(Arc<Inner>);

pub(crate) struct Inner {
    conn: Conn,
    pub(crate) config: WebConfig,
    /// Random per process; every form carries it.
    pub(crate) csrf: String,
    pub(crate) history: Mutex<History>,
}

impl std::ops::Deref for App {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl App {
    pub(crate) fn new(config: WebConfig, conn: Conn) -> Result<Self, WebError> {
        let mut bytes = [0u8; 24];
        getrandom::fill(&mut bytes).map_err(|e| WebError::Random(e.to_string()))?;
        let csrf = bytes.iter().map(|b| format!("{b:02x}")).collect();
        Ok(Self(Arc::new(Inner {
            conn,
            config,
            csrf,
            history: Mutex::new(History::default()),
        })))
    }

    /// A handle on the shared command connection.
    pub(crate) fn conn(&self) -> Conn {
        self.conn.clone()
    }

    /// The queue `name`, which must be registered.
    pub(crate) async fn queue(&self, name: &str) -> PageResult<Queue> {
        let queue = Queue::with_prefix(&self.config.prefix, name)
            .map_err(|e| PageError::NotFound(format!("no queue {name:?}: {e}")))?;
        let known = inspect::known_queues(&mut self.conn(), &self.config.prefix).await?;
        if known.iter().any(|k| k == name) {
            Ok(queue)
        } else {
            Err(PageError::NotFound(format!(
                "no queue {name:?} under prefix {:?}",
                self.config.prefix
            )))
        }
    }

    /// Refuses an action on a read-only dashboard (the guard refuses every
    /// POST first; this is the handlers' own check).
    pub(crate) fn writable(&self) -> PageResult<()> {
        if self.config.read_only {
            Err(PageError::Forbidden(
                "this dashboard is read-only (millrace web --read-only)".into(),
            ))
        } else {
            Ok(())
        }
    }
}

/// Every route, behind the guard (auth, CSRF, read-only, headers).
pub(crate) fn router(app: App) -> Router {
    Router::new()
        .route("/", get(crate::overview::page))
        .route("/fragments/overview", get(crate::overview::fragment))
        .route("/schedules", get(crate::schedules::page))
        .route("/assets/app.js", get(script))
        .route("/assets/app.css", get(style))
        .route("/queues/{queue}", get(crate::queue_page::ready))
        .route(
            "/queues/{queue}/counts",
            get(crate::queue_page::counts_fragment),
        )
        .route("/queues/{queue}/pending", get(crate::queue_page::pending))
        .route("/queues/{queue}/delayed", get(crate::queue_page::delayed))
        .route("/queues/{queue}/dead", get(crate::queue_page::dead))
        .route("/queues/{queue}/dead/confirm", get(crate::confirm::page))
        .route("/queues/{queue}/jobs/{id}", get(crate::job::page))
        .route("/queues/{queue}/find", get(crate::job::find))
        .route("/queues/{queue}/consumers", get(crate::consumers::page))
        .route("/queues/{queue}/pause", post(crate::actions::pause))
        .route("/queues/{queue}/resume", post(crate::actions::resume))
        .route("/queues/{queue}/requeue", post(crate::actions::requeue))
        .route("/queues/{queue}/run-now", post(crate::actions::run_now))
        .route("/queues/{queue}/dead/replay", post(crate::actions::replay))
        .route("/queues/{queue}/dead/purge", post(crate::actions::purge))
        .route(
            "/queues/{queue}/schedules/pause",
            post(crate::schedules::pause),
        )
        .route(
            "/queues/{queue}/schedules/resume",
            post(crate::schedules::resume),
        )
        .route(
            "/queues/{queue}/consumers/prune",
            post(crate::consumers::prune),
        )
        .fallback(|| async { PageError::NotFound("no such page".into()) })
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            crate::security::guard,
        ))
        .with_state(app)
}

async fn script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("../assets/app.js"),
    )
}

async fn style() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("../assets/app.css"),
    )
}
