package org.userattrs.keycloak;

import org.keycloak.Config;
import org.keycloak.models.KeycloakSession;
import org.keycloak.models.KeycloakSessionFactory;
import org.keycloak.services.resource.RealmResourceProvider;
import org.keycloak.services.resource.RealmResourceProviderFactory;

/**
 * Registers the userattrs resource under /realms/{realm}/userattrs: the
 * atomic primitive the userattrs Keycloak store merges with. The merge
 * rules stay in the service; this only reads a user's attributes with a
 * version and writes changes when the version still holds.
 */
public class AttributesResourceProviderFactory implements RealmResourceProviderFactory {
    public static final String ID = "userattrs";

    @Override
    public RealmResourceProvider create(KeycloakSession session) {
        return new RealmResourceProvider() {
            @Override
            public Object getResource() {
                return new AttributesResource(session);
            }

            @Override
            public void close() {
            }
        };
    }

    @Override
    public void init(Config.Scope config) {
    }

    @Override
    public void postInit(KeycloakSessionFactory factory) {
    }

    @Override
    public void close() {
    }

    @Override
    public String getId() {
        return ID;
    }
}
