//! Setting up an instance for the control plane, as an instance owner: the project and its
//! roles, the API application and its key, machine users with keys, instance and project role
//! grants. Used once by `tenantctl zitadel bootstrap`; every call is "find, else create", so a
//! bootstrap can be repeated and resumed.
//!
//! These are ZITADEL's v1 management and admin APIs (gRPC-gateway, `x-zitadel-orgid` names the
//! organization acted in), still served by ZITADEL v4 beside the newer v2 services.

use reqwest::Method;
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{Value, json};
use tracing::info;

use crate::management::{Management, ManagementError, Page, UserRef};

/// A project as the search answers it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Project {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub project_role_assertion: bool,
}

/// An application of a project, API or OIDC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Application {
    pub id: String,
    pub client_id: String,
}

/// A key as ZITADEL hands it out once: the key file's JSON, to be stored by the caller.
#[derive(Clone)]
pub struct NewKey {
    pub key_id: String,
    pub json: String,
}

impl std::fmt::Debug for NewKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewKey")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// Whether a find-or-create found or created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ensured {
    Created,
    Existing,
}

impl Ensured {
    pub fn created(self) -> bool {
        self == Ensured::Created
    }
}

const EQUALS: &str = "TEXT_QUERY_METHOD_EQUALS";

impl Management {
    /// The organization the credential's user belongs to (`GET /management/v1/orgs/me`).
    pub async fn my_organization(&self) -> Result<(String, String), ManagementError> {
        #[derive(Deserialize)]
        struct Answer {
            org: Org,
        }
        #[derive(Deserialize)]
        struct Org {
            id: String,
            #[serde(default)]
            name: String,
        }
        let answer: Answer = self
            .call(Method::GET, "/management/v1/orgs/me", None, None)
            .await?;
        Ok((answer.org.id, answer.org.name))
    }

    /// The project of this name in the organization, created with role assertion on when there
    /// is none; an existing one gets role assertion turned on.
    pub async fn ensure_project(
        &self,
        org_id: &str,
        name: &str,
    ) -> Result<(Project, Ensured), ManagementError> {
        let found = self.find_project(org_id, name).await?;
        let Some(project) = found else {
            #[derive(Deserialize)]
            struct Created {
                id: String,
            }
            let body = json!({"name": name, "projectRoleAssertion": true});
            let created: Created = self
                .call(
                    Method::POST,
                    "/management/v1/projects",
                    Some(&body),
                    Some(org_id),
                )
                .await?;
            info!(project_id = created.id, "project created");
            let project = Project {
                id: created.id,
                name: name.to_owned(),
                project_role_assertion: true,
            };
            return Ok((project, Ensured::Created));
        };
        if !project.project_role_assertion {
            let path = format!("/management/v1/projects/{}", project.id);
            let body = json!({"name": name, "projectRoleAssertion": true});
            self.call::<Value>(Method::PUT, &path, Some(&body), Some(org_id))
                .await?;
        }
        Ok((
            Project {
                project_role_assertion: true,
                ..project
            },
            Ensured::Existing,
        ))
    }

    async fn find_project(
        &self,
        org_id: &str,
        name: &str,
    ) -> Result<Option<Project>, ManagementError> {
        let body = json!({"queries": [{"nameQuery": {"name": name, "method": EQUALS}}]});
        let page: Page<Project> = self
            .call(
                Method::POST,
                "/management/v1/projects/_search",
                Some(&body),
                Some(org_id),
            )
            .await?;
        Ok(page.result.into_iter().find(|p| p.name == name))
    }

    /// Adds the role to the project; one that exists counts as done.
    pub async fn ensure_project_role(
        &self,
        org_id: &str,
        project_id: &str,
        key: &str,
        display_name: &str,
    ) -> Result<Ensured, ManagementError> {
        let path = format!("/management/v1/projects/{project_id}/roles");
        let body = json!({"roleKey": key, "displayName": display_name});
        match self
            .call::<Value>(Method::POST, &path, Some(&body), Some(org_id))
            .await
        {
            Ok(_) => Ok(Ensured::Created),
            Err(e) if e.already_exists() => Ok(Ensured::Existing),
            Err(e) => Err(e),
        }
    }

    /// The project's application of this name, if any.
    pub async fn find_application(
        &self,
        org_id: &str,
        project_id: &str,
        name: &str,
    ) -> Result<Option<Application>, ManagementError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct App {
            id: String,
            name: String,
            #[serde(default)]
            api_config: Option<ClientConfig>,
            #[serde(default)]
            oidc_config: Option<ClientConfig>,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct ClientConfig {
            client_id: String,
        }
        let path = format!("/management/v1/projects/{project_id}/apps/_search");
        let body = json!({"queries": [{"nameQuery": {"name": name, "method": EQUALS}}]});
        let page: Page<App> = self
            .call(Method::POST, &path, Some(&body), Some(org_id))
            .await?;
        Ok(page
            .result
            .into_iter()
            .find(|a| a.name == name)
            .and_then(|a| {
                let client_id = a.api_config.or(a.oidc_config)?.client_id;
                Some(Application {
                    id: a.id,
                    client_id,
                })
            }))
    }

    /// The project's API application of this name, authenticating with a private-key JWT
    /// (for introspection).
    pub async fn ensure_api_application(
        &self,
        org_id: &str,
        project_id: &str,
        name: &str,
    ) -> Result<(Application, Ensured), ManagementError> {
        if let Some(app) = self.find_application(org_id, project_id, name).await? {
            return Ok((app, Ensured::Existing));
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Created {
            app_id: String,
            client_id: String,
        }
        let path = format!("/management/v1/projects/{project_id}/apps/api");
        let body = json!({"name": name, "authMethodType": "API_AUTH_METHOD_TYPE_PRIVATE_KEY_JWT"});
        let created: Created = self
            .call(Method::POST, &path, Some(&body), Some(org_id))
            .await?;
        info!(app_id = created.app_id, "API application created");
        Ok((
            Application {
                id: created.app_id,
                client_id: created.client_id,
            },
            Ensured::Created,
        ))
    }

    /// The project's web application of this name for a browser sign-in: the authorization
    /// code flow with PKCE and no secret, JWT access tokens with the roles asserted, these
    /// redirect URIs (plain `http` ones in development mode only, as ZITADEL requires). An
    /// existing one gets these settings.
    pub async fn ensure_web_application(
        &self,
        org_id: &str,
        project_id: &str,
        name: &str,
        redirect_uri: &str,
        post_logout_uri: &str,
    ) -> Result<(Application, Ensured), ManagementError> {
        let dev_mode = !redirect_uri.starts_with("https://");
        let config = json!({
            "redirectUris": [redirect_uri],
            "responseTypes": ["OIDC_RESPONSE_TYPE_CODE"],
            "grantTypes": ["OIDC_GRANT_TYPE_AUTHORIZATION_CODE"],
            "appType": "OIDC_APP_TYPE_WEB",
            "authMethodType": "OIDC_AUTH_METHOD_TYPE_NONE",
            "postLogoutRedirectUris": [post_logout_uri],
            "devMode": dev_mode,
            "accessTokenType": "OIDC_TOKEN_TYPE_JWT",
            "accessTokenRoleAssertion": true,
        });
        if let Some(app) = self.find_application(org_id, project_id, name).await? {
            let path = format!(
                "/management/v1/projects/{project_id}/apps/{}/oidc_config",
                app.id
            );
            match self
                .call::<Value>(Method::PUT, &path, Some(&config), Some(org_id))
                .await
            {
                Err(ManagementError::Api { message, .. }) if message.contains("NoChanges") => {}
                other => drop(other?),
            }
            return Ok((app, Ensured::Existing));
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Created {
            app_id: String,
            client_id: String,
        }
        let mut body = config;
        body["name"] = json!(name);
        let path = format!("/management/v1/projects/{project_id}/apps/oidc");
        let created: Created = self
            .call(Method::POST, &path, Some(&body), Some(org_id))
            .await?;
        info!(app_id = created.app_id, "web application created");
        Ok((
            Application {
                id: created.app_id,
                client_id: created.client_id,
            },
            Ensured::Created,
        ))
    }

    /// A new JSON key for the application (shown only in this answer).
    pub async fn add_application_key(
        &self,
        org_id: &str,
        project_id: &str,
        app_id: &str,
    ) -> Result<NewKey, ManagementError> {
        let path = format!("/management/v1/projects/{project_id}/apps/{app_id}/keys");
        self.add_json_key(org_id, &path).await
    }

    /// The machine user of this user name in the organization, created (with JWT access
    /// tokens) when there is none.
    pub async fn ensure_machine_user(
        &self,
        org_id: &str,
        user_name: &str,
        name: &str,
        description: &str,
    ) -> Result<(String, Ensured), ManagementError> {
        if let Some(id) = self.find_user_by_name(org_id, user_name).await? {
            return Ok((id, Ensured::Existing));
        }
        let body = json!({
            "userName": user_name,
            "name": name,
            "description": description,
            "accessTokenType": "ACCESS_TOKEN_TYPE_JWT",
        });
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Created {
            user_id: String,
        }
        match self
            .call::<Created>(
                Method::POST,
                "/management/v1/users/machine",
                Some(&body),
                Some(org_id),
            )
            .await
        {
            Ok(created) => {
                info!(user_id = created.user_id, user_name, "machine user created");
                Ok((created.user_id, Ensured::Created))
            }
            Err(e) if e.already_exists() => {
                match self
                    .eventually(|| self.find_user_by_name(org_id, user_name))
                    .await?
                {
                    Some(id) => Ok((id, Ensured::Existing)),
                    None => Err(ManagementError::Conflict(format!(
                        "the user name {user_name:?} is taken outside organization {org_id}"
                    ))),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// The id of the user with this user name in the organization, if any.
    pub async fn find_user_by_name(
        &self,
        org_id: &str,
        user_name: &str,
    ) -> Result<Option<String>, ManagementError> {
        let body = json!({"queries": [
            {"userNameQuery": {"userName": user_name, "method": EQUALS}},
            {"organizationIdQuery": {"organizationId": org_id}},
        ]});
        let page: Page<UserRef> = self
            .call(Method::POST, "/v2/users", Some(&body), None)
            .await?;
        Ok(page.result.into_iter().next().map(|u| u.user_id))
    }

    /// A new JSON key for the machine user (shown only in this answer).
    pub async fn add_machine_key(
        &self,
        org_id: &str,
        user_id: &str,
    ) -> Result<NewKey, ManagementError> {
        let path = format!("/management/v1/users/{user_id}/keys");
        self.add_json_key(org_id, &path).await
    }

    /// A new JSON key at `path` (an application's or a machine user's). ZITADEL names the key's
    /// id `id` for the one and `keyId` for the other; the key file is `keyDetails`, base64.
    async fn add_json_key(&self, org_id: &str, path: &str) -> Result<NewKey, ManagementError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Created {
            #[serde(alias = "keyId")]
            id: String,
            key_details: String,
        }
        let body = json!({"type": "KEY_TYPE_JSON"});
        let created: Created = self
            .call(Method::POST, path, Some(&body), Some(org_id))
            .await?;
        Ok(NewKey {
            key_id: created.id,
            json: decode_key(&created.key_details)?,
        })
    }

    /// A new personal access token for the machine user (shown only in this answer), without
    /// an expiry: rotate it by making another and deleting the old one in ZITADEL.
    pub async fn add_personal_access_token(
        &self,
        org_id: &str,
        user_id: &str,
    ) -> Result<SecretString, ManagementError> {
        #[derive(Deserialize)]
        struct Created {
            token: String,
        }
        let path = format!("/management/v1/users/{user_id}/pats");
        let created: Created = self
            .call(Method::POST, &path, Some(&json!({})), Some(org_id))
            .await?;
        Ok(SecretString::from(created.token))
    }

    /// Makes the user an instance manager with these roles (`IAM_ORG_MANAGER`, ...); a user who
    /// is one already counts as done (their roles are left as they are).
    pub async fn ensure_instance_member(
        &self,
        user_id: &str,
        roles: &[&str],
    ) -> Result<Ensured, ManagementError> {
        let body = json!({"userId": user_id, "roles": roles});
        match self
            .call::<Value>(Method::POST, "/admin/v1/members", Some(&body), None)
            .await
        {
            Ok(_) => Ok(Ensured::Created),
            Err(e) if e.already_exists() => Ok(Ensured::Existing),
            Err(e) => Err(e),
        }
    }
}

/// `keyDetails` is the key file, base64 (gRPC-gateway's encoding of `bytes`).
fn decode_key(details: &str) -> Result<String, ManagementError> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(details)
        .map_err(|e| ManagementError::Protocol(format!("key details: {e}")))?;
    String::from_utf8(bytes).map_err(|e| ManagementError::Protocol(format!("key details: {e}")))
}
