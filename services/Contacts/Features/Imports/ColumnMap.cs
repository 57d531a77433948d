using Crm.BuildingBlocks.Errors;

namespace Crm.Contacts.Features.Imports;

/// <summary>Finds the mapped columns in the CSV's header row; a missing column is an error naming the mapping field.</summary>
public sealed class ColumnMap(IReadOnlyList<string> header)
{
    private readonly Dictionary<string, int> _index = header
        .Select((name, i) => (name: name.Trim(), i))
        .GroupBy(x => x.name, StringComparer.OrdinalIgnoreCase)
        .ToDictionary(g => g.Key, g => g.First().i, StringComparer.OrdinalIgnoreCase);

    public int Count => header.Count;

    /// <returns>The column index, or -1 when the mapping leaves the field unset and it is optional.</returns>
    public int Find(string mappingField, string column, bool required, Validation v)
    {
        if (string.IsNullOrWhiteSpace(column))
        {
            if (required) v.Add(mappingField, "is required: name the CSV column that holds it");
            return -1;
        }
        if (_index.TryGetValue(column.Trim(), out var i)) return i;
        v.Add(mappingField, $"column '{column}' is not in the file's header ({string.Join(", ", header)})");
        return -1;
    }
}
