package org.userattrs.keycloak;

import jakarta.persistence.EntityManager;
import jakarta.persistence.LockModeType;
import jakarta.ws.rs.Consumes;
import jakarta.ws.rs.DELETE;
import jakarta.ws.rs.GET;
import jakarta.ws.rs.POST;
import jakarta.ws.rs.PUT;
import jakarta.ws.rs.Path;
import jakarta.ws.rs.PathParam;
import jakarta.ws.rs.Produces;
import jakarta.ws.rs.QueryParam;
import jakarta.ws.rs.core.MediaType;
import jakarta.ws.rs.core.Response;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.Base64;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.regex.Pattern;
import org.keycloak.connections.jpa.JpaConnectionProvider;
import org.keycloak.events.admin.OperationType;
import org.keycloak.events.admin.ResourceType;
import org.keycloak.models.KeycloakSession;
import org.keycloak.models.RealmModel;
import org.keycloak.models.UserModel;
import org.keycloak.models.cache.UserCache;
import org.keycloak.models.jpa.UserAdapter;
import org.keycloak.models.jpa.entities.UserEntity;
import org.keycloak.representations.userprofile.config.UPConfig;
import org.keycloak.services.managers.AppAuthManager;
import org.keycloak.services.managers.AuthenticationManager;
import org.keycloak.services.resources.admin.AdminAuth;
import org.keycloak.services.resources.admin.AdminEventBuilder;
import org.keycloak.services.resources.admin.fgap.AdminPermissionEvaluator;
import org.keycloak.services.resources.admin.fgap.AdminPermissions;
import org.keycloak.storage.UserStorageProvider;
import org.keycloak.userprofile.UserProfile;
import org.keycloak.userprofile.UserProfileContext;
import org.keycloak.userprofile.UserProfileProvider;
import org.keycloak.userprofile.ValidationException;

/**
 * A user's attributes with a version, and a write of attribute changes that
 * holds only while that version does, inside one Keycloak transaction that
 * locks the user's row. The version is a hash of all the user's attributes,
 * so it needs no column of its own and every node computes it alike.
 *
 * Every read and write serves one kind of caller, named by the query
 * parameter caller: "user", a user reading and changing their own
 * attributes, which the realm's user profile judges as Keycloak's own
 * Account API does (UserProfileContext.ACCOUNT); or "admin", a backend
 * acting as an administrator, judged as Keycloak's Admin API judges
 * (UserProfileContext.USER_API). A read returns only what the caller may
 * view; a write refuses any attribute the caller may not edit.
 *
 * The service authenticates with a bearer token of the realm and needs the
 * manage-users permission on its users.
 */
public class AttributesResource {
    /** Keycloak's user ids: anything else never reaches the database. */
    private static final Pattern USER_ID = Pattern.compile("^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$");

    /**
     * What the service checks, so that it never talks to an extension that
     * ignores the caller (protocol 2) or cannot erase (protocol 3).
     */
    private static final String PROTOCOL = "3";

    /** Keycloak's profile fields: the user's own, which an erasure leaves. */
    private static final Set<String> PROFILE_FIELDS = Set.of(UserModel.USERNAME, UserModel.EMAIL, UserModel.FIRST_NAME, UserModel.LAST_NAME);

    private final KeycloakSession session;
    private final RealmModel realm;

    public AttributesResource(KeycloakSession session) {
        this.session = session;
        this.realm = session.getContext().getRealm();
    }

    /** The extension is here and the caller may use it. */
    @GET
    @Produces(MediaType.APPLICATION_JSON)
    public Response info() {
        authorize();
        return Response.ok(Map.of("extension", "userattrs", "protocol", PROTOCOL)).build();
    }

    /** The attributes the caller may view, and the version of all of them. */
    @GET
    @Path("users/{id}")
    @Produces(MediaType.APPLICATION_JSON)
    public Response read(@PathParam("id") String id, @QueryParam("caller") String caller) {
        authorize();
        UserProfileContext context = context(caller);
        if (context == null) {
            return badCaller();
        }
        UserModel user = user(id);
        if (user == null) {
            return notFound();
        }
        return Response.ok(Map.of("version", version(user.getAttributes()), "attributes", readable(context, user),
                "caller", caller)).build();
    }

    /**
     * Applies {"version": v, "set": {name: [values]}, "remove": [names]}
     * when the user's attributes still have version v: 200 with the new
     * version; 409 with the current version and the attributes the caller
     * may view when they moved; 403 naming the attributes the caller may
     * not edit; 422 when the realm's user profile would refuse or drop a
     * value. Attributes the change does not name are never written.
     */
    @PUT
    @Path("users/{id}")
    @Consumes(MediaType.APPLICATION_JSON)
    @Produces(MediaType.APPLICATION_JSON)
    @SuppressWarnings("unchecked")
    public Response write(@PathParam("id") String id, @QueryParam("caller") String caller, Map<String, Object> change) {
        AdminAuth auth = authorize();
        UserProfileContext context = context(caller);
        if (context == null) {
            return badCaller();
        }
        UserModel user = lockedUser(auth, id);
        if (user == null) {
            return notFound();
        }
        Map<String, List<String>> current = user.getAttributes();
        if (!version(current).equals(change.get("version"))) {
            // The attributes as they are now, so that the caller can apply
            // its merge again without reading them first.
            return Response.status(Response.Status.CONFLICT)
                    .entity(Map.of("version", version(current), "attributes", readable(context, user))).build();
        }

        Map<String, List<String>> set = (Map<String, List<String>>) change.getOrDefault("set", Map.of());
        List<String> remove = (List<String>) change.getOrDefault("remove", List.of());
        Map<String, List<String>> next = new HashMap<>(current);
        next.putAll(set);
        remove.forEach(next::remove);
        Set<String> named = new LinkedHashSet<>(set.keySet());
        named.addAll(remove);
        UserProfile profile = needsProfile(named) ? session.getProvider(UserProfileProvider.class).create(context, next, user) : null;
        List<String> readOnly = readOnly(context, profile, named);
        if (!readOnly.isEmpty()) {
            return Response.status(Response.Status.FORBIDDEN).entity(Map.of("readOnly", readOnly)).build();
        }
        List<Map<String, String>> refused = refusals(profile, set);
        if (!refused.isEmpty()) {
            return Response.status(422).entity(Map.of("errors", refused)).build();
        }
        set.forEach(user::setAttribute);
        remove.forEach(user::removeAttribute);
        // The admin event names what changed, never a value: a realm that
        // keeps admin events with their representation would otherwise
        // keep values an erasure cannot reach.
        changed(auth, user, Map.of("set", new ArrayList<>(set.keySet()), "remove", remove));
        return Response.ok(Map.of("version", version(next))).build();
    }

    /**
     * Erases the user's attributes, as an administrator: every attribute
     * the realm's user profile lets an administrator edit goes, in one
     * transaction under the user's row lock; the profile fields and what
     * no administrator may edit (federation links) stay, and are named in
     * "kept". The user stays: deleting users is Keycloak's own business.
     * The admin event names the attributes removed, never a value.
     */
    @DELETE
    @Path("users/{id}")
    @Produces(MediaType.APPLICATION_JSON)
    public Response erase(@PathParam("id") String id) {
        AdminAuth auth = authorize();
        UserModel user = lockedUser(auth, id);
        if (user == null) {
            return notFound();
        }
        Map<String, List<String>> current = user.getAttributes();
        Set<String> names = new LinkedHashSet<>(current.keySet());
        names.removeAll(PROFILE_FIELDS);
        UserProfile profile = needsProfile(names)
                ? session.getProvider(UserProfileProvider.class).create(UserProfileContext.USER_API, current, user) : null;
        List<String> kept = readOnly(UserProfileContext.USER_API, profile, names);
        names.removeAll(kept);
        names.forEach(user::removeAttribute);
        changed(auth, user, Map.of("erased", new ArrayList<>(names)));
        Map<String, List<String>> next = new HashMap<>(current);
        names.forEach(next::remove);
        return Response.ok(Map.of("version", version(next), "removed", names, "kept", kept)).build();
    }

    /** Most ids one lookup of known users takes. */
    private static final int MAX_KNOWN_IDS = 10000;

    /**
     * Which of {"ids": [...]} are users of this realm, as {"known": [...]}:
     * one query for the users Keycloak keeps, then, in a realm with user
     * federation, Keycloak's own lookup, which asks the federation too, for
     * those the query did not find. Reconciliation asks it a page of ids at a time.
     */
    @POST
    @Path("users/known")
    @Consumes(MediaType.APPLICATION_JSON)
    @Produces(MediaType.APPLICATION_JSON)
    @SuppressWarnings("unchecked")
    public Response known(Map<String, Object> body) {
        authorize();
        List<String> ids = (List<String>) body.getOrDefault("ids", List.of());
        if (ids.size() > MAX_KNOWN_IDS) {
            return Response.status(Response.Status.BAD_REQUEST).entity(Map.of("error", "at most " + MAX_KNOWN_IDS + " ids")).build();
        }
        List<String> valid = ids.stream().filter(id -> USER_ID.matcher(id).matches()).distinct().toList();
        Set<String> known = new HashSet<>();
        if (!valid.isEmpty()) {
            EntityManager em = session.getProvider(JpaConnectionProvider.class).getEntityManager();
            known.addAll(em.createQuery("select u.id from UserEntity u where u.realmId = :realm and u.id in :ids", String.class)
                    .setParameter("realm", realm.getId()).setParameter("ids", valid).getResultList());
        }
        // Only a realm with user federation has users the query cannot
        // see: elsewhere an id it did not find is no user.
        boolean federated = realm.getComponentsStream(realm.getId(), UserStorageProvider.class.getName()).findAny().isPresent();
        for (String id : valid) {
            if (federated && !known.contains(id) && session.users().getUserById(realm, id) != null) {
                known.add(id);
            }
        }
        return Response.ok(Map.of("known", known)).build();
    }

    /**
     * The user of id in this realm over its row, locked until the
     * transaction of this request ends, so that writers of the same user
     * on every node take turns here; null for no such user.
     */
    private UserModel lockedUser(AdminAuth auth, String id) {
        if (!USER_ID.matcher(id).matches()) {
            return null;
        }
        EntityManager em = session.getProvider(JpaConnectionProvider.class).getEntityManager();
        UserEntity row = em.find(UserEntity.class, id, LockModeType.PESSIMISTIC_WRITE);
        if (row == null || !realm.getId().equals(row.getRealmId())) {
            return null;
        }
        if (id.equals(auth.getUser().getId())) {
            // Authenticating may have loaded the caller's own user before
            // the lock: read it again under the lock. Any other user's row
            // is read fresh by the locking find itself.
            em.refresh(row);
        }
        // The user model over the locked row itself: Keycloak's cache may
        // hold an older state, and is told of the change by changed.
        return new UserAdapter(session, realm, em, row);
    }

    /**
     * Tells Keycloak's user cache, which drops the user on every node when
     * this transaction commits, and records the admin event.
     */
    private void changed(AdminAuth auth, UserModel user, Object representation) {
        UserCache cache = session.getProvider(UserCache.class);
        if (cache != null) {
            cache.evict(realm, user);
        }
        new AdminEventBuilder(realm, auth, session, session.getContext().getConnection())
                .operation(OperationType.UPDATE).resource(ResourceType.USER)
                .resourcePath("users", user.getId()).representation(representation).success();
    }

    /**
     * The attributes of the user the caller may view, as the realm's user
     * profile judges them in the caller's context.
     */
    private Map<String, List<String>> readable(UserProfileContext context, UserModel user) {
        return session.getProvider(UserProfileProvider.class).create(context, user).getAttributes().getReadable();
    }

    /**
     * Whether judging these names needs the user profile, the costly part
     * of a write: unmanaged attributes are judged by the realm's policy
     * for them alone.
     */
    private boolean needsProfile(Set<String> names) {
        UPConfig config = session.getProvider(UserProfileProvider.class).getConfiguration();
        for (String name : names) {
            if (config.getAttribute(name) != null) {
                return true;
            }
        }
        return false;
    }

    /**
     * The names the caller may not edit. Unmanaged attributes follow the
     * realm's unmanaged-attribute policy as Keycloak applies it: ENABLED,
     * everyone edits; ADMIN_EDIT, administrators only (users do not even
     * see them); ADMIN_VIEW, nobody. A realm that keeps no unmanaged
     * attributes at all refuses their values instead (see refusals).
     */
    private List<String> readOnly(UserProfileContext context, UserProfile profile, Set<String> names) {
        List<String> refused = new ArrayList<>();
        UPConfig config = session.getProvider(UserProfileProvider.class).getConfiguration();
        UPConfig.UnmanagedAttributePolicy policy = config.getUnmanagedAttributePolicy();
        boolean editsUnmanaged = policy == null || policy == UPConfig.UnmanagedAttributePolicy.ENABLED
                || policy == UPConfig.UnmanagedAttributePolicy.ADMIN_EDIT && context.isAdminContext();
        for (String name : names) {
            boolean editable = config.getAttribute(name) == null ? editsUnmanaged : !profile.getAttributes().isReadOnly(name);
            if (!editable) {
                refused.add(name);
            }
        }
        return refused;
    }

    /**
     * The values the realm's user profile refuses, or would drop: those of
     * unmanaged attributes where the realm keeps none, and what the
     * validators of the managed attributes set refuse.
     */
    private List<Map<String, String>> refusals(UserProfile profile, Map<String, List<String>> set) {
        List<Map<String, String>> refused = new ArrayList<>();
        UPConfig config = session.getProvider(UserProfileProvider.class).getConfiguration();
        if (config.getUnmanagedAttributePolicy() == null) {
            for (String name : set.keySet()) {
                if (config.getAttribute(name) == null) {
                    refused.add(Map.of("attribute", name, "message", "the realm's user profile does not keep unmanaged attributes"));
                }
            }
        }
        if (profile == null) {
            return refused;
        }
        try {
            profile.validate();
        } catch (ValidationException e) {
            for (ValidationException.Error error : e.getErrors()) {
                if (set.containsKey(error.getAttribute())) {
                    refused.add(Map.of("attribute", error.getAttribute(), "message", error.getMessage()));
                }
            }
        }
        return refused;
    }

    /** The user-profile context of a caller, or null for none of the two. */
    private static UserProfileContext context(String caller) {
        if ("user".equals(caller)) {
            return UserProfileContext.ACCOUNT;
        }
        if ("admin".equals(caller)) {
            return UserProfileContext.USER_API;
        }
        return null;
    }

    private static Response badCaller() {
        return Response.status(Response.Status.BAD_REQUEST).entity(Map.of("error", "caller must be user or admin")).build();
    }

    private UserModel user(String id) {
        if (!USER_ID.matcher(id).matches()) {
            return null;
        }
        return session.users().getUserById(realm, id);
    }

    private AdminAuth authorize() {
        AuthenticationManager.AuthResult result = new AppAuthManager.BearerTokenAuthenticator(session)
                .setRealm(realm).authenticate();
        if (result == null) {
            throw new jakarta.ws.rs.NotAuthorizedException("Bearer");
        }
        AdminAuth auth = new AdminAuth(realm, result.token(), result.user(), result.client());
        AdminPermissionEvaluator permissions = AdminPermissions.evaluator(session, realm, auth);
        permissions.users().requireManage();
        return auth;
    }

    private static Response notFound() {
        return Response.status(Response.Status.NOT_FOUND).entity(Map.of("error", "user-not-found")).build();
    }

    /** A hash of the attributes, length-prefixed so that no two sets collide by concatenation. */
    static String version(Map<String, List<String>> attributes) {
        try {
            MessageDigest digest = MessageDigest.getInstance("SHA-256");
            for (Map.Entry<String, List<String>> e : new TreeMap<>(attributes).entrySet()) {
                field(digest, e.getKey());
                digest.update(Integer.toString(e.getValue().size()).getBytes(StandardCharsets.UTF_8));
                for (String v : e.getValue()) {
                    field(digest, v == null ? "" : v);
                }
            }
            return Base64.getUrlEncoder().withoutPadding().encodeToString(digest.digest());
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }

    private static void field(MessageDigest digest, String s) {
        byte[] b = s.getBytes(StandardCharsets.UTF_8);
        digest.update((b.length + ":").getBytes(StandardCharsets.UTF_8));
        digest.update(b);
    }
}
