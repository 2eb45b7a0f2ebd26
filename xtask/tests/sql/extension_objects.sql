-- Every object of extension spock in this database, one line each, with
-- what a user or the library can observe of it: definitions, columns in
-- order, constraints, indexes, defaults, privileges and comments. Two
-- databases whose spock objects are the same give the same lines, whether
-- they came from CREATE EXTENSION or from ALTER EXTENSION ... UPDATE.
WITH ext AS (
    SELECT oid, extconfig, extcondition FROM pg_extension WHERE extname = 'spock'
), members AS (
    SELECT d.classid, d.objid
      FROM pg_depend d, ext
     WHERE d.refclassid = 'pg_extension'::regclass AND d.refobjid = ext.oid AND d.deptype = 'e'
), columns AS (
    SELECT a.attrelid,
           string_agg(format('%s %s%s%s%s', a.attname, format_type(a.atttypid, a.atttypmod),
                             CASE WHEN a.attnotnull THEN ' not null' ELSE '' END,
                             coalesce(' default ' || pg_get_expr(ad.adbin, ad.adrelid), ''),
                             CASE WHEN a.attidentity <> '' THEN ' identity ' || a.attidentity::text ELSE '' END),
                      ', ' ORDER BY a.attnum) AS cols
      FROM pg_attribute a
      LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
     WHERE a.attnum > 0 AND NOT a.attisdropped
     GROUP BY a.attrelid
)
SELECT line FROM (
    -- Functions, procedures and aggregates.
    SELECT format('%s | %s returns %s | kind %s volatile %s strict %s parallel %s secdef %s leakproof %s cost %s rows %s | %s %s | config %s | acl %s | comment %s',
                  pg_describe_object(m.classid, m.objid, 0), pg_get_function_arguments(p.oid),
                  pg_get_function_result(p.oid), p.prokind, p.provolatile, p.proisstrict, p.proparallel,
                  p.prosecdef, p.proleakproof, p.procost, p.prorows, p.prosrc, coalesce(p.probin, ''),
                  p.proconfig, p.proacl, obj_description(p.oid, 'pg_proc')) ||
           coalesce((SELECT format(' | aggregate %s %s %s %s %s', a.aggtransfn, a.aggfinalfn,
                                   format_type(a.aggtranstype, NULL), a.agginitval, a.aggkind)
                       FROM pg_aggregate a WHERE a.aggfnoid = p.oid), '') AS line
      FROM members m JOIN pg_proc p ON m.classid = 'pg_proc'::regclass AND p.oid = m.objid
    UNION ALL
    -- Tables, views, sequences, composite types: columns, options, privileges.
    SELECT format('%s | kind %s persistence %s options %s rls %s | %s | acl %s | comment %s | %s',
                  pg_describe_object(m.classid, m.objid, 0), c.relkind, c.relpersistence, c.reloptions,
                  c.relrowsecurity, coalesce(col.cols, ''), c.relacl, obj_description(c.oid, 'pg_class'),
                  CASE c.relkind
                      WHEN 'v' THEN pg_get_viewdef(c.oid)
                      WHEN 'S' THEN (SELECT format('sequence %s start %s increment %s min %s max %s cycle %s',
                                                   format_type(s.seqtypid, NULL), s.seqstart, s.seqincrement,
                                                   s.seqmin, s.seqmax, s.seqcycle)
                                       FROM pg_sequence s WHERE s.seqrelid = c.oid)
                      ELSE ''
                  END)
      FROM members m JOIN pg_class c ON m.classid = 'pg_class'::regclass AND c.oid = m.objid
      LEFT JOIN columns col ON col.attrelid = c.oid
    UNION ALL
    -- Column comments and column privileges of member relations.
    SELECT format('column %s.%s | acl %s | comment %s', c.relname, a.attname, a.attacl,
                  col_description(c.oid, a.attnum))
      FROM members m JOIN pg_class c ON m.classid = 'pg_class'::regclass AND c.oid = m.objid
      JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
     WHERE a.attacl IS NOT NULL OR col_description(c.oid, a.attnum) IS NOT NULL
    UNION ALL
    -- Constraints of member tables, by name.
    SELECT format('constraint %s on %s: %s', con.conname, c.relname, pg_get_constraintdef(con.oid))
      FROM members m JOIN pg_class c ON m.classid = 'pg_class'::regclass AND c.oid = m.objid
      JOIN pg_constraint con ON con.conrelid = c.oid
    UNION ALL
    -- Indexes of member tables.
    SELECT format('index %s', pg_get_indexdef(i.indexrelid))
      FROM members m JOIN pg_index i ON m.classid = 'pg_class'::regclass AND i.indrelid = m.objid
    UNION ALL
    -- Triggers and rules of member relations.
    SELECT format('trigger %s', pg_get_triggerdef(t.oid))
      FROM members m JOIN pg_trigger t ON m.classid = 'pg_class'::regclass AND t.tgrelid = m.objid
     WHERE NOT t.tgisinternal
    UNION ALL
    SELECT format('rule %s', pg_get_ruledef(r.oid))
      FROM members m JOIN pg_rewrite r ON m.classid = 'pg_class'::regclass AND r.ev_class = m.objid
     WHERE r.rulename <> '_RETURN'
    UNION ALL
    -- Types (enum labels in order), schemas and everything else by description.
    SELECT format('%s | %s', pg_describe_object(m.classid, m.objid, 0),
                  CASE
                      WHEN m.classid = 'pg_type'::regclass THEN
                          (SELECT format('type %s %s', t.typtype,
                                         (SELECT string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder)
                                            FROM pg_enum e WHERE e.enumtypid = t.oid))
                             FROM pg_type t WHERE t.oid = m.objid)
                      WHEN m.classid = 'pg_namespace'::regclass THEN
                          (SELECT format('acl %s comment %s', n.nspacl, obj_description(n.oid, 'pg_namespace'))
                             FROM pg_namespace n WHERE n.oid = m.objid)
                      ELSE ''
                  END)
      FROM members m
     WHERE m.classid NOT IN ('pg_proc'::regclass, 'pg_class'::regclass)
    UNION ALL
    -- Which tables pg_dump dumps the rows of, and with which condition.
    SELECT format('dumped configuration table %s where %s', c.relname, cond)
      FROM ext, unnest(ext.extconfig, ext.extcondition) AS u(relid, cond)
      JOIN pg_class c ON c.oid = u.relid
) all_objects
ORDER BY line;
