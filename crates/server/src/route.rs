//! The route table: every route the server serves, with who may call it.
//!
//! Each feature lists its routes as [`Route`]s; [`crate::route_table`]
//! gathers them and [`router`] builds the one router from that table, so a
//! route that is not in the table is not served. A route's access is not
//! written twice: it is the type of its handler's first argument, a
//! [`Guard`] (the role extractors of [`crate::auth`], or [`Public`]), read
//! at compile time by [`Route::get`] and its siblings; a handler whose first
//! argument is not a guard does not compile into the table. The tests walk
//! the same table ([`Route::method`], [`Route::path`], [`Route::access`]),
//! calling every route with every role.

use axum::extract::FromRequestParts;
use axum::handler::Handler;
use axum::http::request::Parts;
use axum::http::Method;
use axum::routing::{MethodFilter, MethodRouter};
use axum::Router;
use commonlab_core::auth::Role;
use std::convert::Infallible;

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, without a key.
    Public,
    /// A key whose role includes this one (401 without a valid key, 403
    /// with one whose role does not).
    Role(Role),
    /// A web console page: a signed-in session whose key's role includes
    /// this one (without a session, 303 to the sign-in page; with a role
    /// that does not, a 403 page). See [`crate::console`].
    Console(Role),
}

/// A handler's first argument, which says (and enforces) who may call it.
pub trait Guard {
    const ACCESS: Access;
}

/// The guard of a route anyone may call: no key is asked for.
#[derive(Debug, Clone, Copy)]
pub struct Public;

impl Guard for Public {
    const ACCESS: Access = Access::Public;
}

impl<S: Send + Sync> FromRequestParts<S> for Public {
    type Rejection = Infallible;

    async fn from_request_parts(_: &mut Parts, _: &S) -> Result<Self, Infallible> {
        Ok(Public)
    }
}

/// A handler whose first argument is the guard `G` (axum's handler
/// arguments `T` are `(M, T1, T2, ...)`).
pub trait GuardedHandler<G, T, S>: Handler<T, S> {}

macro_rules! guarded_handler {
    ($($rest:ident),*) => {
        impl<H, S, M, G, $($rest,)*> GuardedHandler<G, (M, G, $($rest,)*), S> for H where
            H: Handler<(M, G, $($rest,)*), S>
        {
        }
    };
}

guarded_handler!();
guarded_handler!(T2);
guarded_handler!(T2, T3);
guarded_handler!(T2, T3, T4);
guarded_handler!(T2, T3, T4, T5);
guarded_handler!(T2, T3, T4, T5, T6);
guarded_handler!(T2, T3, T4, T5, T6, T7);
guarded_handler!(T2, T3, T4, T5, T6, T7, T8);

/// `Route::get(path, handler)` and its siblings: the route's access is
/// the guard type `G` of the handler's first argument.
macro_rules! method_constructors {
    ($($(#[$doc:meta])* $name:ident: $method:ident),* $(,)?) => {
        $(
            $(#[$doc])*
            pub fn $name<H, G, T>(path: &'static str, handler: H) -> Self
            where
                H: GuardedHandler<G, T, S>,
                G: Guard,
                T: 'static,
            {
                Self::on(Method::$method, path, handler)
            }
        )*
    };
}

/// One route: a method on a path template, who may call it, its handler.
pub struct Route<S> {
    method: Method,
    path: &'static str,
    access: Access,
    handler: MethodRouter<S>,
}

impl<S> Route<S>
where
    S: Clone + Send + Sync + 'static,
{
    fn on<H, G, T>(method: Method, path: &'static str, handler: H) -> Self
    where
        H: GuardedHandler<G, T, S>,
        G: Guard,
        T: 'static,
    {
        let filter = MethodFilter::try_from(method.clone()).expect("a standard method");
        Route {
            method,
            path,
            access: G::ACCESS,
            handler: axum::routing::on(filter, handler),
        }
    }

    method_constructors!(
        /// A `GET` route (also answering `HEAD`).
        get: GET,
        /// A `POST` route.
        post: POST,
        /// A `PUT` route.
        put: PUT,
        /// A `DELETE` route.
        delete: DELETE,
    );

    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The path template, as axum matches it (`/api/v1/flags/{key}`).
    pub fn path(&self) -> &'static str {
        self.path
    }

    pub fn access(&self) -> Access {
        self.access
    }
}

/// The router serving exactly `table` (methods on one path are merged; a
/// method given twice for one path panics at start).
pub fn router<S>(table: Vec<Route<S>>) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    table
        .into_iter()
        .fold(Router::new(), |router, r| router.route(r.path, r.handler))
}
