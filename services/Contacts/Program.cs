using Crm.BuildingBlocks.Hosting;
using Crm.Contacts;

var app = ContactsModule.Build(args);
return await app.RunOrMigrateAsync(args);
