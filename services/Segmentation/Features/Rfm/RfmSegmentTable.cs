using Crm.BuildingBlocks.Data;
using Crm.BuildingBlocks.Errors;
using Crm.Segmentation.V1;
using Dapper;

namespace Crm.Segmentation.Features.Rfm;

/// <summary>A named segment's inclusive score ranges.</summary>
public sealed record RfmNamedSegment(string Name, int RMin, int RMax, int FMin, int FMax, int MMin, int MMax)
{
    public bool Matches(int r, int f, int m) => r >= RMin && r <= RMax && f >= FMin && f <= FMax && m >= MMin && m <= MMax;
}

/// <summary>
/// A tenant's table of named segments: checked in order, the first whose ranges hold the contact's R, F and
/// M wins, otherwise <see cref="Others"/>. Stored in rfm_segments; a tenant without rows has <see cref="Default"/>.
/// </summary>
public sealed class RfmSegmentTable(IReadOnlyList<RfmNamedSegment> segments)
{
    public const string Others = "Others";
    public const int MaxSegments = 100;
    public const int MaxNameLength = 100;

    public IReadOnlyList<RfmNamedSegment> Segments { get; } = segments;

    /// <summary>The widely used rfm R package's table.</summary>
    public static RfmSegmentTable Default { get; } = new([
        new("Champions", 5, 5, 5, 5, 5, 5),
        new("Potential Loyalist", 3, 5, 3, 5, 2, 5),
        new("Loyal Customers", 2, 4, 2, 4, 2, 4),
        new("Promising", 3, 4, 1, 3, 3, 5),
        new("New Customers", 4, 5, 1, 3, 1, 5),
        new("Can't Lose Them", 1, 2, 3, 4, 4, 5),
        new("At Risk", 1, 2, 2, 5, 4, 5),
        new("Need Attention", 1, 3, 3, 5, 3, 5),
        new("About To Sleep", 2, 3, 1, 3, 1, 4),
        new("Lost", 1, 1, 1, 5, 1, 5),
    ]);

    public string SegmentOf(int r, int f, int m) => Segments.FirstOrDefault(s => s.Matches(r, f, m))?.Name ?? Others;

    /// <summary>The names in report order: the table's, then <see cref="Others"/>.</summary>
    public IEnumerable<string> Names => Segments.Select(s => s.Name).Append(Others);

    /// <summary>The columns as arrays, for the scoring SQL's unnest.</summary>
    public object AsParameters() => new
    {
        names = Segments.Select(s => s.Name).ToArray(),
        rMin = Segments.Select(s => s.RMin).ToArray(), rMax = Segments.Select(s => s.RMax).ToArray(),
        fMin = Segments.Select(s => s.FMin).ToArray(), fMax = Segments.Select(s => s.FMax).ToArray(),
        mMin = Segments.Select(s => s.MMin).ToArray(), mMax = Segments.Select(s => s.MMax).ToArray(),
    };

    public static async Task<RfmSegmentTable> LoadAsync(TenantTransaction scope, CancellationToken ct)
    {
        var rows = (await scope.Connection.QueryAsync<RfmNamedSegment>(new CommandDefinition("""
            SELECT name, r_min AS RMin, r_max AS RMax, f_min AS FMin, f_max AS FMax, m_min AS MMin, m_max AS MMax
            FROM rfm_segments WHERE tenant_id = @tenant ORDER BY position
            """, new { tenant = scope.Tenant }, scope.Transaction, cancellationToken: ct))).AsList();
        return rows.Count == 0 ? Default : new RfmSegmentTable(rows);
    }

    public async Task SaveAsync(TenantTransaction scope, CancellationToken ct)
    {
        var parameters = new DynamicParameters(AsParameters());
        parameters.Add("tenant", scope.Tenant);
        await scope.Connection.ExecuteAsync(new CommandDefinition("""
            DELETE FROM rfm_segments WHERE tenant_id = @tenant;
            INSERT INTO rfm_segments (tenant_id, position, name, r_min, r_max, f_min, f_max, m_min, m_max)
            SELECT @tenant, t.position, t.name, t.r_min, t.r_max, t.f_min, t.f_max, t.m_min, t.m_max
            FROM unnest(@names, @rMin, @rMax, @fMin, @fMax, @mMin, @mMax) WITH ORDINALITY
                AS t(name, r_min, r_max, f_min, f_max, m_min, m_max, position)
            """, parameters, scope.Transaction, cancellationToken: ct));
    }

    /// <summary>Validates a table sent by a caller, naming each offending field (e.g. table.segments[3].r_min).</summary>
    public static RfmSegmentTable FromProto(V1.RfmTable? table, string path = "table")
    {
        var v = new Validation();
        if (table is null || table.Segments.Count == 0)
        {
            v.Add(path + ".segments", "name at least one segment (everyone else is \"Others\")");
            v.ThrowIfInvalid();
        }
        if (table!.Segments.Count > MaxSegments) v.Add(path + ".segments", $"at most {MaxSegments} segments");
        var seen = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
        for (var i = 0; i < table.Segments.Count; i++)
        {
            var s = table.Segments[i];
            var at = $"{path}.segments[{i}]";
            var name = s.Name.Trim();
            if (name.Length == 0) v.Add(at + ".name", "must not be empty");
            else if (name.Length > MaxNameLength) v.Add(at + ".name", $"at most {MaxNameLength} characters");
            else if (string.Equals(name, Others, StringComparison.OrdinalIgnoreCase)) v.Add(at + ".name", $"\"{Others}\" is the name of contacts no segment matches");
            else if (!seen.Add(name)) v.Add(at + ".name", $"\"{name}\" is named twice");
            Range(v, at, "r", s.RMin, s.RMax);
            Range(v, at, "f", s.FMin, s.FMax);
            Range(v, at, "m", s.MMin, s.MMax);
        }
        v.ThrowIfInvalid();
        return new RfmSegmentTable(table.Segments.Select(s => new RfmNamedSegment(s.Name.Trim(), s.RMin, s.RMax, s.FMin, s.FMax, s.MMin, s.MMax)).ToArray());
    }

    private static void Range(Validation v, string at, string score, int min, int max)
    {
        var minOk = min is >= 1 and <= 5;
        var maxOk = max is >= 1 and <= 5;
        if (!minOk) v.Add($"{at}.{score}_min", $"must be 1 to 5 (was {min})");
        if (!maxOk) v.Add($"{at}.{score}_max", $"must be 1 to 5 (was {max})");
        if (minOk && maxOk && min > max) v.Add($"{at}.{score}_min", $"must not exceed {score}_max ({min} > {max})");
    }

    public V1.RfmTable ToProto()
    {
        var table = new V1.RfmTable();
        table.Segments.AddRange(Segments.Select(s => new RfmSegmentRule
        {
            Name = s.Name, RMin = s.RMin, RMax = s.RMax, FMin = s.FMin, FMax = s.FMax, MMin = s.MMin, MMax = s.MMax,
        }));
        return table;
    }
}
