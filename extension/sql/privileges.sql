-- Who may use what (sql-api.md §1, behaviour.md §21). Runs last.
--
-- Everyone may look names up in the schema; what they may then use is
-- granted object by object. Catalogs (which hold connection strings) are
-- for superusers only. Management functions are revoked from PUBLIC, and
-- they also check for a superuser themselves. Public functions are granted
-- to PUBLIC. Functions a provider's replication role calls (node_info, the
-- protocol versions) are granted to PUBLIC and check for superuser or the
-- REPLICATION attribute themselves, since that attribute is not a role one
-- can grant to.
GRANT USAGE ON SCHEMA spock TO PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA spock FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA spock FROM PUBLIC;
REVOKE EXECUTE ON ALL ROUTINES IN SCHEMA spock FROM PUBLIC;

GRANT EXECUTE ON FUNCTION
    spock.spock_version(),
    spock.spock_version_num(),
    spock.get_country(),
    spock.spock_max_proto_version(),
    spock.spock_min_proto_version(),
    spock.spock_gen_slot_name(name, name, name),
    spock.xact_commit_timestamp_origin(xid),

    spock.core_patches_status(),
    spock.node_info(),
    spock.node_info_rows(),
    spock.repset_show_table_rows(regclass, text[]),
    spock.repset_show_table(regclass, text[]),
    spock.row_filter_condition(regclass, text[]),
    spock.table_data_filtered(anyelement, regclass, text[]),
    spock.delta_apply(int2, int2, int2),
    spock.delta_apply(int4, int4, int4),
    spock.delta_apply(int8, int8, int8),
    spock.delta_apply(float4, float4, float4),
    spock.delta_apply(float8, float8, float8),
    spock.delta_apply(numeric, numeric, numeric),
    spock.delta_apply(money, money, money)
TO PUBLIC;
GRANT SELECT ON spock.core_patches TO PUBLIC;

-- The consistency check aggregate (sql-api.md §4.12) is public.
GRANT EXECUTE ON ROUTINE spock.md5_agg_sfunc(text, anyelement), spock.md5_agg(anyelement) TO PUBLIC;
