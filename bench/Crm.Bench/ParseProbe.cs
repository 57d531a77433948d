using System.Diagnostics;
using Crm.Contacts.Features.Imports;

namespace Crm.Bench;

/// <summary>How fast the CSV reader alone goes over a file (diagnostics; not part of make bench).</summary>
public static class ParseProbe
{
    public static async Task RunAsync(string file)
    {
        await using var stream = File.OpenRead(file);
        var csv = new CsvReader(stream);
        var sw = Stopwatch.StartNew();
        long rows = 0, bytes = 0;
        while (await csv.ReadAsync(CancellationToken.None))
        {
            rows++;
            for (var i = 0; i < csv.FieldCount; i++) bytes += csv.Span(i).Length;
        }
        Console.WriteLine($"csv: {rows} rows in {sw.Elapsed.TotalSeconds:F2} s ({rows / sw.Elapsed.TotalSeconds:F0} rows/s, {bytes} field bytes)");
    }
}
