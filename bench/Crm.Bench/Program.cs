using Crm.Bench;

// make bench → `Crm.Bench all`; each benchmark prints one line: "bench <name>: <value> <unit>, <ratio>x of <baseline>".
var which = args.Length > 0 ? args[0] : "all";
var env = BenchEnvironment.FromEnvironment();
if (which is "all" or "import") await ImportBench.RunAsync(env, rows: args.Length > 1 ? int.Parse(args[1], System.Globalization.CultureInfo.InvariantCulture) : 1_000_000);
if (which is "all" or "caps") await CapsBench.RunAsync(env);
if (which is "all" or "pipeline") await PipelineBench.RunAsync(env);
if (which is "all" or "webhooks") await WebhookBench.RunAsync(env);
if (which is "all" or "segment-count") await SegmentCountBench.RunAsync(env);
if (which is "all" or "segment-projection") await SegmentProjectionBench.RunAsync(env);
if (which is "all" or "rfm") await RfmBench.RunAsync(env);
if (which == "segmentation-data")
{
    // Builds (or finds) the cached Segmentation data and makes a copy of it: `segmentation-data [contacts orders]`.
    var size = args.Length > 2 ? new SegmentationDataSize(int.Parse(args[1], System.Globalization.CultureInfo.InvariantCulture), int.Parse(args[2], System.Globalization.CultureInfo.InvariantCulture)) : null;
    var data = await SegmentationData.EnsureAsync(env, "crm_bench_segmentation_data", size);
    Console.WriteLine(data);
    await env.DropDatabaseAsync(data.Database);
}
if (which == "csv-probe") await ParseProbe.RunAsync(args[1]);
return 0;
