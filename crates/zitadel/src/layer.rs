//! A tower layer: `Authorization: Bearer <token>` -> a verified [`Caller`] in the request
//! extensions, or 401 before the inner service runs.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response, StatusCode, header};
use tower::{Layer, Service};

use crate::{Verifier, VerifyError};

#[derive(Clone)]
pub struct CallerLayer {
    verifier: Arc<Verifier>,
}

impl CallerLayer {
    pub fn new(verifier: Arc<Verifier>) -> Self {
        Self { verifier }
    }
}

impl<S> Layer<S> for CallerLayer {
    type Service = CallerService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        CallerService {
            inner,
            verifier: self.verifier.clone(),
        }
    }
}

#[derive(Clone)]
pub struct CallerService<S> {
    inner: S,
    verifier: Arc<Verifier>,
}

impl<S, B, R> Service<Request<B>> for CallerService<S>
where
    S: Service<Request<B>, Response = Response<R>> + Clone + Send + 'static,
    S::Future: Send,
    B: Send + 'static,
    R: Default,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<R>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        // The clone that was polled ready serves this request.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let verifier = self.verifier.clone();
        Box::pin(async move {
            let token = request
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::trim)
                .map(str::to_owned);
            let verified = match token {
                Some(token) => verifier.verify(&token).await,
                None => Err(VerifyError::Malformed("no bearer token".into())),
            };
            match verified {
                Ok(caller) => {
                    request.extensions_mut().insert(caller);
                    inner.call(request).await
                }
                // The identity provider could not be asked: neither accepted nor refused.
                Err(e) if !e.is_refusal() => {
                    tracing::warn!(error = %e, "token not verified");
                    let mut response = Response::new(R::default());
                    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                    response
                        .headers_mut()
                        .insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
                    Ok(response)
                }
                Err(e) => {
                    tracing::info!(error = %e, "token refused");
                    let mut response = Response::new(R::default());
                    *response.status_mut() = StatusCode::UNAUTHORIZED;
                    response.headers_mut().insert(
                        header::WWW_AUTHENTICATE,
                        header::HeaderValue::from_static("Bearer"),
                    );
                    Ok(response)
                }
            }
        })
    }
}
