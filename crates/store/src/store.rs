//! Connecting to MongoDB and preparing the collections.

use bson::{Document, doc};
use mongodb::options::{ClientOptions, IndexOptions};
use mongodb::{Client, Collection, Database, IndexModel};
use pushservice_config::MongoSettings;

use crate::error::StoreError;

/// Collection of sites, as the original service named it.
pub const SITES: &str = "sites";
/// Collection of pushes.
pub const PUSHES: &str = "pushes";
/// Collection of subscribers.
pub const SUBSCRIBERS: &str = "subscribers";

/// Claims of push triggers, and of their end (done or canceled): a unique `_id` decides
/// races that conditional updates cannot on FerretDB 1.x (see `Store::restart_push` and the
/// `pushes` module).
pub const PUSH_TRIGGERS: &str = "pushTriggers";

/// Database used when `MONGODB_URL` names none.
const DEFAULT_DATABASE: &str = "pushservice";

/// A connected store. Cheap to clone: the driver's client is a shared connection pool.
#[derive(Clone, Debug)]
pub struct Store {
    pub(crate) database: Database,
    pub(crate) sites: Collection<Document>,
    pub(crate) pushes: Collection<Document>,
    pub(crate) subscribers: Collection<Document>,
    pub(crate) delivery_stats: Collection<Document>,
    pub(crate) triggers: Collection<Document>,
    pub(crate) batch_size: u32,
}

impl Store {
    /// Connects and pings the server, giving up after the configured timeout with an error that
    /// names the (redacted) address tried.
    pub async fn connect(settings: &MongoSettings) -> Result<Store, StoreError> {
        let url = settings.redacted_url();
        let mut options = ClientOptions::parse(&settings.url)
            .await
            .map_err(|source| StoreError::BadUrl {
                url: url.clone(),
                source,
            })?;
        options.server_selection_timeout = Some(settings.timeout);
        options.connect_timeout = Some(settings.timeout);
        options
            .app_name
            .get_or_insert_with(|| "pushservice".to_owned());
        let database_name = options
            .default_database
            .clone()
            .unwrap_or_else(|| DEFAULT_DATABASE.to_owned());
        let client = Client::with_options(options).map_err(|source| StoreError::BadUrl {
            url: url.clone(),
            source,
        })?;
        let database = client.database(&database_name);
        database
            .run_command(doc! { "ping": 1 })
            .await
            .map_err(|source| StoreError::Unreachable {
                url,
                timeout: settings.timeout,
                source,
            })?;
        Ok(Store {
            sites: database.collection(SITES),
            pushes: database.collection(PUSHES),
            subscribers: database.collection(SUBSCRIBERS),
            delivery_stats: database.collection(crate::delivery_stats::DELIVERY_STATS),
            triggers: database.collection(PUSH_TRIGGERS),
            database,
            batch_size: settings.batch_size,
        })
    }

    /// Closes the connection pool and ends the driver's background tasks. Call it before a
    /// process exits: otherwise the driver's clean-up races the runtime's shutdown and can
    /// report a (harmless but alarming) panic from one of its tasks.
    pub async fn close(&self) {
        self.database
            .client()
            .clone()
            .shutdown()
            .immediate(true)
            .await;
    }

    /// One round trip to the server (`ping`), for health checks.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.database
            .run_command(doc! { "ping": 1 })
            .await
            .map(|_| ())
            .map_err(StoreError::query("pinging MongoDB"))
    }

    /// The database, for tools and tests that need raw access.
    pub fn database(&self) -> &Database {
        &self.database
    }

    /// Creates the indexes the daemons rely on; a no-op when they exist.
    ///
    /// `{siteId, subscribed, _id}` lets the parser stream one site's subscribed audience in
    /// `_id` order and resume after a checkpoint with an index range scan.
    pub async fn ensure_indexes(&self) -> Result<(), StoreError> {
        let audience = IndexModel::builder()
            .keys(doc! { "siteId": 1, "subscribed": 1, "_id": 1 })
            .options(
                IndexOptions::builder()
                    .name("siteId_1_subscribed_1__id_1".to_owned())
                    .build(),
            )
            .build();
        self.subscribers
            .create_index(audience)
            .await
            .map_err(StoreError::query(
                "creating subscribers index {siteId, subscribed, _id}",
            ))?;
        // Pushes to users (`audience.externalIds`) and the API's direct sends by external id.
        let by_user = IndexModel::builder()
            .keys(doc! { "siteId": 1, "externalId": 1 })
            .options(
                IndexOptions::builder()
                    .name("siteId_1_externalId_1".to_owned())
                    .build(),
            )
            .build();
        self.subscribers
            .create_index(by_user)
            .await
            .map_err(StoreError::query(
                "creating subscribers index {siteId, externalId}",
            ))?;
        let by_site = IndexModel::builder()
            .keys(doc! { "siteId": 1, "status": 1 })
            .options(
                IndexOptions::builder()
                    .name("siteId_1_status_1".to_owned())
                    .build(),
            )
            .build();
        self.pushes
            .create_index(by_site)
            .await
            .map_err(StoreError::query("creating pushes index {siteId, status}"))?;
        let by_push = IndexModel::builder()
            .keys(doc! { "pushId": 1 })
            .options(IndexOptions::builder().name("pushId_1".to_owned()).build())
            .build();
        self.delivery_stats
            .create_index(by_push)
            .await
            .map_err(StoreError::query(
                "creating pushDeliveryStats index {pushId}",
            ))?;
        Ok(())
    }
}
