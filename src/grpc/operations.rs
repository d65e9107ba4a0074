//! `google.longrunning.Operations`: reading the workspace's long-running
//! operations (purges). Secret keys only (enforced by the key layer).

use tonic::{Request, Response, Status};

use super::{auth::principal, convert};
use crate::{
    app::{self, App},
    domain::Reason,
    proto::longrunning::{
        GetOperationRequest, ListOperationsRequest, ListOperationsResponse, Operation,
        operations_server,
    },
};

/// The Operations handlers.
#[derive(Clone)]
pub struct Operations {
    app: App,
}

impl Operations {
    /// Handlers over `app`.
    pub fn new(app: App) -> Self {
        Self { app }
    }
}

#[tonic::async_trait]
impl operations_server::Operations for Operations {
    async fn list_operations(
        &self,
        request: Request<ListOperationsRequest>,
    ) -> Result<Response<ListOperationsResponse>, Status> {
        let ws = principal(&request)?.workspace;
        let request = request.into_inner();
        if !request.filter.is_empty() {
            return Err(app::Error::refused(
                Reason::InvalidArgument,
                "filter: filters are not supported; leave it empty to list every operation.",
            )
            .into());
        }
        if !matches!(request.name.as_str(), "" | "operations") {
            return Err(app::Error::refused(
                Reason::InvalidArgument,
                "name: the only collection is \"operations\"; leave it empty or pass that.",
            )
            .into());
        }
        // A negative page size is treated like none.
        let page_size = u32::try_from(request.page_size).unwrap_or(0);
        let page = self
            .app
            .list_operations(ws, page_size, &request.page_token)
            .await?;
        Ok(Response::new(ListOperationsResponse {
            operations: page.operations.iter().map(convert::operation).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn get_operation(
        &self,
        request: Request<GetOperationRequest>,
    ) -> Result<Response<Operation>, Status> {
        let ws = principal(&request)?.workspace;
        let op = self.app.operation(ws, &request.get_ref().name).await?;
        Ok(Response::new(convert::operation(&op)))
    }
}
