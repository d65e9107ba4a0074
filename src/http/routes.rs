//! The REST routes, read from the `google.api.http` annotations of the
//! descriptor set (never a second table), and the matching of a request path
//! against their templates.

use std::sync::Arc;

use http::{Method, Uri};
use prost_reflect::{DescriptorPool, MessageDescriptor, MethodDescriptor, ReflectMessage, Value};

/// Where the JSON body of a request goes (`HttpRule.body`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BodyTarget {
    /// No body is read (GET, DELETE without `body`).
    None,
    /// The body is the whole request message (`body: "*"`).
    Whole,
    /// The body is the message field of this name (`body: "settings"`).
    Field(String),
}

/// One piece of a path template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    /// Matches exactly this text.
    Literal(String),
    /// Matches one segment and binds it to the field path.
    Variable(Vec<String>),
}

/// A path template such as `/api/v1/persons/{distinct_id}/attributes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Template {
    segments: Vec<Segment>,
    verb: Option<String>,
}

/// The text of a refused template; only the build's own protos reach this.
#[derive(Debug, thiserror::Error)]
#[error("bad google.api.http path template {template:?}: {why}")]
pub struct TemplateError {
    template: String,
    why: &'static str,
}

impl Template {
    /// Parses the subset of the `google.api.http` template syntax that
    /// single-segment variables need: literals, `{field}` or `{field=*}`,
    /// and a final `:verb`.
    pub(crate) fn parse(template: &str) -> Result<Self, TemplateError> {
        let err = |why| TemplateError {
            template: template.to_owned(),
            why,
        };
        let rest = template
            .strip_prefix('/')
            .ok_or_else(|| err("must start with /"))?;
        // The verb follows the last ':' that is outside braces.
        let (path, verb) = match rest.rfind(':') {
            Some(i) if !rest[i..].contains('}') => (&rest[..i], Some(rest[i + 1..].to_owned())),
            _ => (rest, None),
        };
        let mut segments = Vec::new();
        for part in path.split('/') {
            if let Some(inner) = part.strip_prefix('{') {
                let inner = inner
                    .strip_suffix('}')
                    .ok_or_else(|| err("unclosed variable"))?;
                let field = match inner.split_once('=') {
                    Some((field, "*")) => field,
                    Some(_) => return Err(err("only single-segment variables are supported")),
                    None => inner,
                };
                segments.push(Segment::Variable(
                    field.split('.').map(str::to_owned).collect(),
                ));
            } else if part.is_empty() || part.contains(['{', '}', '*']) {
                return Err(err("empty or wildcard literal segment"));
            } else {
                segments.push(Segment::Literal(part.to_owned()));
            }
        }
        Ok(Self { segments, verb })
    }

    /// The template in OpenAPI's notation: `{distinct_id}` stays, a dotted
    /// field path is kept as the parameter's name.
    pub(crate) fn openapi_path(&self) -> String {
        let mut out = String::new();
        for segment in &self.segments {
            out.push('/');
            match segment {
                Segment::Literal(text) => out.push_str(text),
                Segment::Variable(path) => {
                    out.push('{');
                    out.push_str(&path.join("."));
                    out.push('}');
                }
            }
        }
        if let Some(verb) = &self.verb {
            out.push(':');
            out.push_str(verb);
        }
        out
    }

    /// The field paths bound by the path, in order.
    pub(crate) fn variables(&self) -> impl Iterator<Item = &[String]> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Variable(path) => Some(path.as_slice()),
            Segment::Literal(_) => None,
        })
    }

    /// Matches the raw (still percent-encoded) segments of a path; on a
    /// match, returns each variable's field path with its raw segment.
    fn matches<'p>(&self, raw: &[&'p str]) -> Option<Bound<'_, 'p>> {
        if raw.len() != self.segments.len() {
            return None;
        }
        let (last, init) = raw.split_last()?;
        // A verb is matched on the raw text: an encoded ':' (%3A) inside a
        // variable can never be mistaken for one.
        let last = match &self.verb {
            Some(verb) => last.strip_suffix(verb.as_str())?.strip_suffix(':')?,
            None => last,
        };
        let mut bound = Vec::new();
        for (segment, raw) in self.segments.iter().zip(init.iter().copied().chain([last])) {
            match segment {
                Segment::Literal(text) if text == raw => {}
                Segment::Literal(_) => return None,
                Segment::Variable(_) if raw.is_empty() => return None,
                Segment::Variable(path) => bound.push((path.as_slice(), raw)),
            }
        }
        Some(bound)
    }

    /// Literal segments and a verb make a template more specific: with
    /// `/definitions/{key}` and `/definitions/{key}:archive`, the second wins.
    fn specificity(&self) -> (bool, usize) {
        let literals = self
            .segments
            .iter()
            .filter(|s| matches!(s, Segment::Literal(_)))
            .count();
        (self.verb.is_some(), literals)
    }
}

/// A REST route: an HTTP method and template, and the gRPC method it calls.
#[derive(Debug, Clone)]
pub(crate) struct Route {
    /// The HTTP method.
    pub(crate) method: Method,
    /// The path template.
    pub(crate) template: Template,
    /// The template as written in the annotation: the `route` label.
    pub(crate) path: Arc<str>,
    /// Where the body goes.
    pub(crate) body: BodyTarget,
    /// The gRPC method.
    pub(crate) rpc: MethodDescriptor,
    /// The gRPC path, `/package.Service/Method`.
    pub(crate) grpc_path: String,
    /// The same, parsed once.
    pub(crate) grpc_uri: Uri,
}

impl Route {
    /// The request message of the method.
    pub(crate) fn input(&self) -> MessageDescriptor {
        self.rpc.input()
    }
}

/// The path variables of a match: each field path with its raw segment.
pub(crate) type Bound<'r, 'p> = Vec<(&'r [String], &'p str)>;

/// What matching a request found.
pub(crate) enum Match<'r, 'p> {
    /// A route of this method and path, with the raw path variables.
    Found(&'r Route, Bound<'r, 'p>),
    /// The path exists, but not for this method: the ones it has.
    WrongMethod(Vec<Method>),
    /// No route has this path.
    NotFound,
}

/// Every annotated route of the services.
#[derive(Debug, Clone)]
pub(crate) struct RouteTable {
    routes: Vec<Route>,
}

impl RouteTable {
    /// Reads the routes of `services` (full names) from their annotations.
    /// A unary method without an annotation gets no route; a streaming
    /// method is never routed.
    pub(crate) fn from_pool(
        pool: &DescriptorPool,
        services: &[&str],
    ) -> Result<Self, TemplateError> {
        let http = pool.get_extension_by_name("google.api.http");
        let mut routes = Vec::new();
        for service in services.iter().filter_map(|s| pool.get_service_by_name(s)) {
            for rpc in service.methods() {
                if rpc.is_client_streaming() || rpc.is_server_streaming() {
                    continue;
                }
                let Some(http) = &http else { continue };
                let options = rpc.options();
                if !options.has_extension(http) {
                    continue;
                }
                let Value::Message(rule) = options.get_extension(http).into_owned() else {
                    continue;
                };
                let mut rules = vec![rule.clone()];
                if let Some(Value::List(more)) = rule
                    .get_field_by_name("additional_bindings")
                    .map(|v| v.into_owned())
                {
                    rules.extend(more.into_iter().filter_map(|v| match v {
                        Value::Message(m) => Some(m),
                        _ => None,
                    }));
                }
                for rule in rules {
                    if let Some(route) = route_of(&rpc, &rule)? {
                        routes.push(route);
                    }
                }
            }
        }
        Ok(Self { routes })
    }

    /// Every route.
    pub(crate) fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// Finds the route of `method` and `path` (raw, without the query).
    pub(crate) fn find<'r, 'p>(&'r self, method: &Method, path: &'p str) -> Match<'r, 'p> {
        let Some(rest) = path.strip_prefix('/') else {
            return Match::NotFound;
        };
        let raw: Vec<&str> = rest.split('/').collect();
        let matching: Vec<(&Route, Bound<'_, '_>)> = self
            .routes
            .iter()
            .filter_map(|r| r.template.matches(&raw).map(|bound| (r, bound)))
            .collect();
        // `/definitions/k:archive` is the archive route's path, not a GET of
        // key `k:archive`: where a verb matches, only verb routes count.
        let verb = matching.iter().any(|(r, _)| r.template.verb.is_some());
        let mut best: Option<(&Route, Bound<'_, '_>)> = None;
        let mut allowed = Vec::new();
        for (route, bound) in matching {
            if verb && route.template.verb.is_none() {
                continue;
            }
            if route.method != *method {
                if !allowed.contains(&route.method) {
                    allowed.push(route.method.clone());
                }
                continue;
            }
            let better = best
                .as_ref()
                .is_none_or(|(b, _)| route.template.specificity() > b.template.specificity());
            if better {
                best = Some((route, bound));
            }
        }
        match best {
            Some((route, bound)) => Match::Found(route, bound),
            None if allowed.is_empty() => Match::NotFound,
            None => Match::WrongMethod(allowed),
        }
    }
}

/// The route of one `HttpRule`, if it names a method this layer serves.
fn route_of(
    rpc: &MethodDescriptor,
    rule: &prost_reflect::DynamicMessage,
) -> Result<Option<Route>, TemplateError> {
    let text = |name: &str| match rule.get_field_by_name(name).as_deref() {
        Some(Value::String(s)) => s.clone(),
        _ => String::new(),
    };
    let pattern = ["get", "put", "post", "delete", "patch"]
        .into_iter()
        .find(|name| {
            rule.descriptor()
                .get_field_by_name(name)
                .is_some_and(|f| rule.has_field(&f))
        });
    let Some(verb) = pattern else {
        return Ok(None);
    };
    let method = match verb {
        "get" => Method::GET,
        "put" => Method::PUT,
        "post" => Method::POST,
        "delete" => Method::DELETE,
        _ => Method::PATCH,
    };
    let path: Arc<str> = text(verb).into();
    let template = Template::parse(&path)?;
    let body = match text("body").as_str() {
        "" => BodyTarget::None,
        "*" => BodyTarget::Whole,
        field => BodyTarget::Field(field.to_owned()),
    };
    let grpc_path = format!("/{}/{}", rpc.parent_service().full_name(), rpc.name());
    let grpc_uri = Uri::try_from(grpc_path.as_str()).map_err(|_| TemplateError {
        template: grpc_path.clone(),
        why: "not a URI path",
    })?;
    Ok(Some(Route {
        method,
        template,
        path,
        body,
        grpc_path,
        grpc_uri,
        rpc: rpc.clone(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_parse_literals_variables_and_verbs() {
        let t = Template::parse("/api/v1/attributes/definitions/{key}:archive").unwrap();
        assert_eq!(t.verb.as_deref(), Some("archive"));
        assert_eq!(t.segments.len(), 5);
        assert_eq!(
            t.openapi_path(),
            "/api/v1/attributes/definitions/{key}:archive"
        );
        let t = Template::parse("/api/v1/persons/{distinct_id=*}/attributes").unwrap();
        assert_eq!(t.verb, None);
        assert_eq!(
            t.variables().collect::<Vec<_>>(),
            vec![&["distinct_id".to_owned()][..]]
        );
        for bad in ["api/v1", "/a/{b", "/a/{b=**}", "/a//b", "/a/*"] {
            assert!(Template::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn matching_keeps_encoded_text_and_requires_the_verb() {
        let t = Template::parse("/p/{id}/attributes").unwrap();
        let bound = t.matches(&["p", "a%2Fb%3Ac", "attributes"]).unwrap();
        assert_eq!(bound[0].1, "a%2Fb%3Ac");
        assert!(t.matches(&["p", "", "attributes"]).is_none());
        assert!(t.matches(&["p", "x", "other"]).is_none());
        assert!(t.matches(&["p", "x"]).is_none());
        let v = Template::parse("/d/{key}:archive").unwrap();
        assert_eq!(v.matches(&["d", "k:archive"]).unwrap()[0].1, "k");
        assert!(v.matches(&["d", "k"]).is_none());
        assert!(v.matches(&["d", ":archive"]).is_none());
        assert!(v.matches(&["d", "k%3Aarchive"]).is_none());
    }

    #[test]
    fn the_table_holds_every_annotated_method() {
        let pool = DescriptorPool::decode(crate::proto::FILE_DESCRIPTOR_SET).unwrap();
        let table = RouteTable::from_pool(&pool, &crate::proto::SERVICE_NAMES).unwrap();
        for service in crate::proto::SERVICE_NAMES {
            let service = pool.get_service_by_name(service).unwrap();
            for rpc in service
                .methods()
                .filter(|m| !m.is_client_streaming() && !m.is_server_streaming())
            {
                assert!(
                    table.routes().iter().any(|r| r.rpc == rpc),
                    "{} has no route",
                    rpc.full_name()
                );
            }
        }
        let found = |m: Method, p: &str| match table.find(&m, p) {
            Match::Found(route, _) => route.rpc.name().to_owned(),
            Match::WrongMethod(allowed) => format!("405 {allowed:?}"),
            Match::NotFound => "404".to_owned(),
        };
        assert_eq!(
            found(Method::POST, "/api/v1/attributes/values"),
            "SetAttribute"
        );
        assert_eq!(
            found(Method::POST, "/api/v1/attributes/values:batchSet"),
            "SetAttributes"
        );
        assert_eq!(
            found(Method::POST, "/api/v1/attributes/definitions/k:archive"),
            "ArchiveAttributeDefinition"
        );
        assert_eq!(
            found(Method::GET, "/api/v1/attributes/definitions/k"),
            "GetAttributeDefinition"
        );
        assert_eq!(
            found(Method::PUT, "/api/v1/attributes/definitions/k"),
            "405 [GET, PATCH, DELETE]"
        );
        assert_eq!(
            found(Method::DELETE, "/api/v1/attributes/definitions/k"),
            "DeleteAttributeDefinition"
        );
        assert_eq!(found(Method::GET, "/api/v1/operations/x"), "GetOperation");
        assert_eq!(found(Method::GET, "/api/v1/operations"), "ListOperations");
        assert_eq!(
            found(Method::GET, "/api/v1/attributes/definitions/k:archive"),
            "405 [POST]"
        );
        assert_eq!(found(Method::DELETE, "/api/v1/persons/u"), "DeletePerson");
        assert_eq!(
            found(Method::DELETE, "/api/v1/persons/u/attributes/k"),
            "ClearAttribute"
        );
        assert_eq!(found(Method::GET, "/api/v1/persons"), "ListPersons");
        assert_eq!(found(Method::GET, "/api/v1/persons/u"), "405 [DELETE]");
        assert_eq!(found(Method::GET, "/api/v1/nothing"), "404");
        assert_eq!(found(Method::GET, "/"), "404");
    }
}
